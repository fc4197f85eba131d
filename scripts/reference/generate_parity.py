#!/usr/bin/python3
"""Writes test/fixtures/generate/generate_parity.json: reference generations and logits processing.

Plain PyTorch, written to Hugging Face transformers' definitions:
  * greedy decoding of 8 tokens for the tiny Llama of test/fixtures/models/llama_gqa.* (weights read from
    that fixture), each prompt alone, recomputing the whole sequence each step (no cache), with and
    without a repetition penalty (RepetitionPenaltyLogitsProcessor);
  * processed scores of a few logits rows under temperature, top-k and top-p (TemperatureLogitsWarper,
    TopKLogitsWarper, TopPLogitsWarper, applied in that order after the repetition penalty), -inf kept.
Run with Debian's python3-torch:  /usr/bin/python3 scripts/reference/generate_parity.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
MODELS = os.path.join(ROOT, 'test', 'fixtures', 'models')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'generate')
torch.set_num_threads(1)


def load_fixture(name):
    with open(os.path.join(MODELS, name + '.json')) as f:
        meta = json.load(f)
    blob = torch.frombuffer(bytearray(open(os.path.join(MODELS, name + '.bin'), 'rb').read()), dtype=torch.float32)
    params = {}
    for t in meta['tensors']:
        if t['name'].startswith('param:'):
            n = math.prod(t['shape'])
            params[t['name'][6:]] = blob[t['offset']:t['offset'] + n].reshape(t['shape']).clone()
    return meta['config'], params


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def inv_freq(cfg):
    hd = cfg['hidden_size'] // cfg['num_attention_heads']
    inv = 1.0 / (cfg['rope_theta'] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = cfg.get('rope_scaling')
    if rs and rs.get('rope_type') == 'llama3':
        factor, low, high, old = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor'], rs['original_max_position_embeddings']
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def llama_logits(cfg, p, ids):
    """Logits (S, V) of one unbatched sequence, LlamaForCausalLM's math."""
    S = len(ids)
    d, hq, hkv = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd = d // hq
    eps = cfg['rms_norm_eps']

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    freqs = torch.arange(S).float()[:, None] * inv_freq(cfg)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    mask = torch.full((S, S), float('-inf')).triu(1)
    x = p['model.embed_tokens.weight'][torch.tensor(ids)]
    for i in range(cfg['num_hidden_layers']):
        pre = f'model.layers.{i}'
        a = rms(x, p[f'{pre}.input_layernorm.weight'])
        q = F.linear(a, p[f'{pre}.self_attn.q_proj.weight']).view(S, hq, hd)
        k = F.linear(a, p[f'{pre}.self_attn.k_proj.weight']).view(S, hkv, hd)
        v = F.linear(a, p[f'{pre}.self_attn.v_proj.weight']).view(S, hkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        k = k.repeat_interleave(hq // hkv, dim=0)
        v = v.repeat_interleave(hq // hkv, dim=0)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (att.softmax(-1) @ v).transpose(0, 1).reshape(S, hq * hd)
        x = x + F.linear(o, p[f'{pre}.self_attn.o_proj.weight'])
        m = rms(x, p[f'{pre}.post_attention_layernorm.weight'])
        x = x + F.linear(F.silu(F.linear(m, p[f'{pre}.mlp.gate_proj.weight'])) * F.linear(m, p[f'{pre}.mlp.up_proj.weight']), p[f'{pre}.mlp.down_proj.weight'])
    x = rms(x, p['model.norm.weight'])
    return F.linear(x, p['lm_head.weight'])


def repetition_penalty(scores, seen, penalty):
    """scores (V,); each distinct seen token's score divided by penalty if positive, multiplied if negative."""
    idx = torch.tensor(sorted(set(seen)))
    s = scores.gather(0, idx)
    scores = scores.clone()
    scores.scatter_(0, idx, torch.where(s < 0, s * penalty, s / penalty))
    return scores


def top_k(scores, k):
    if k <= 0 or k >= scores.numel():
        return scores
    kth = torch.topk(scores, k).values[-1]
    return scores.masked_fill(scores < kth, float('-inf'))


def top_p(scores, p):
    if p >= 1:
        return scores
    sorted_scores, order = torch.sort(scores, descending=False)
    cum = sorted_scores.softmax(-1).cumsum(-1)
    remove = cum <= (1 - p)
    remove[-1] = False
    return scores.masked_fill(remove.scatter(0, order, remove), float('-inf'))


def greedy(cfg, p, prompt, steps, penalty):
    ids = list(prompt)
    for _ in range(steps):
        scores = llama_logits(cfg, p, ids)[-1].double()
        if penalty != 1.0:
            scores = repetition_penalty(scores, ids, penalty)
        ids.append(int(scores.argmax()))
    return ids[len(prompt):]


def main():
    cfg, params = load_fixture('llama_gqa')
    prompts = [[43, 7, 59, 11, 31], [10, 20, 12], [5]]
    greedy_cases = []
    for penalty in [1.0, 1.3]:
        greedy_cases.append({
            'repetition_penalty': penalty,
            'prompts': prompts,
            'tokens': [greedy(cfg, params, pr, 8, penalty) for pr in prompts],
        })
    gen = torch.Generator().manual_seed(1)
    rows = (torch.randn(3, 40, generator=gen, dtype=torch.float64) * 2).tolist()
    seen = [3, 7, 7, 12, 30]
    settings = [
        {'temperature': 1.0, 'top_k': 0, 'top_p': 1.0, 'repetition_penalty': 1.2},
        {'temperature': 0.7, 'top_k': 5, 'top_p': 1.0, 'repetition_penalty': 1.0},
        {'temperature': 1.0, 'top_k': 0, 'top_p': 0.8, 'repetition_penalty': 1.0},
        {'temperature': 1.5, 'top_k': 10, 'top_p': 0.6, 'repetition_penalty': 1.1},
        {'temperature': 0.5, 'top_k': 1, 'top_p': 0.9, 'repetition_penalty': 1.0},
    ]
    processed = []
    for s in settings:
        out = []
        for r in rows:
            x = torch.tensor(r, dtype=torch.float64)
            x = repetition_penalty(x, seen, s['repetition_penalty'])
            x = x / s['temperature']
            x = top_k(x, s['top_k'])
            x = top_p(x, s['top_p'])
            out.append([None if math.isinf(v) else v for v in x.tolist()])
        processed.append({**s, 'scores': out})
    fixture = {
        'source': 'scripts/reference/generate_parity.py', 'torch': torch.__version__, 'model': 'llama_gqa',
        'greedy': greedy_cases, 'processors': {'rows': rows, 'seen': seen, 'cases': processed},
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'generate_parity.json'), 'w') as f:
        json.dump(fixture, f)
    print('greedy', [c['tokens'] for c in greedy_cases])


main()
