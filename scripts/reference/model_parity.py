#!/usr/bin/python3
"""Writes PyTorch reference fixtures for sftkit's Llama and GPT-2 (test/fixtures/models/).

Plain PyTorch written to Hugging Face transformers' math (LlamaForCausalLM, GPT2LMHeadModel) for tiny
configs: logits, mean loss, every parameter gradient, and the losses of 5 AdamW steps. Run with Debian's
python3-torch:  /usr/bin/python3 scripts/reference/model_parity.py
Fixture format: NAME.json (config, inputs, tensor index, step losses) + NAME.bin (little-endian float32).
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'models')
torch.manual_seed(0)
torch.set_num_threads(1)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_inv_freq(cfg):
    dim = cfg.get('head_dim', cfg['hidden_size'] // cfg['num_attention_heads'])
    base = cfg.get('rope_theta', 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.get('rope_scaling')
    if rs and rs.get('rope_type', rs.get('type')) == 'llama3':
        factor, low, high, old = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor'], rs['original_max_position_embeddings']
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def llama_params(cfg):
    d, L = cfg['hidden_size'], cfg['num_hidden_layers']
    hq, hkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd = d // hq
    ff, V = cfg['intermediate_size'], cfg['vocab_size']
    bias = cfg['model_type'] == 'qwen2'
    p = {'model.embed_tokens.weight': torch.randn(V, d) * 0.5}
    for i in range(L):
        pre = f'model.layers.{i}'
        p[f'{pre}.input_layernorm.weight'] = 1 + 0.1 * torch.randn(d)
        p[f'{pre}.self_attn.q_proj.weight'] = torch.randn(hq * hd, d) * 0.2
        p[f'{pre}.self_attn.k_proj.weight'] = torch.randn(hkv * hd, d) * 0.2
        p[f'{pre}.self_attn.v_proj.weight'] = torch.randn(hkv * hd, d) * 0.2
        if bias:
            p[f'{pre}.self_attn.q_proj.bias'] = torch.randn(hq * hd) * 0.1
            p[f'{pre}.self_attn.k_proj.bias'] = torch.randn(hkv * hd) * 0.1
            p[f'{pre}.self_attn.v_proj.bias'] = torch.randn(hkv * hd) * 0.1
        p[f'{pre}.self_attn.o_proj.weight'] = torch.randn(d, hq * hd) * 0.2
        p[f'{pre}.post_attention_layernorm.weight'] = 1 + 0.1 * torch.randn(d)
        p[f'{pre}.mlp.gate_proj.weight'] = torch.randn(ff, d) * 0.2
        p[f'{pre}.mlp.up_proj.weight'] = torch.randn(ff, d) * 0.2
        p[f'{pre}.mlp.down_proj.weight'] = torch.randn(d, ff) * 0.2
    p['model.norm.weight'] = 1 + 0.1 * torch.randn(d)
    if not cfg.get('tie_word_embeddings', False):
        p['lm_head.weight'] = torch.randn(V, d) * 0.2
    return p


def llama_forward(cfg, p, ids):
    B, S = ids.shape
    d, L = cfg['hidden_size'], cfg['num_hidden_layers']
    hq, hkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd = d // hq
    eps = cfg['rms_norm_eps']
    bias = cfg['model_type'] == 'qwen2'

    def rms(x, w):
        var = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + eps))

    inv = llama_inv_freq(cfg)
    pos = torch.arange(S).float()
    freqs = pos[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    causal = torch.full((S, S), float('-inf')).triu(1)
    # Sliding windows as transformers' configs set them: Mistral on every layer; Qwen2 only with
    # use_sliding_window, on the layers from max_window_layers on (Qwen2Config's layer_types).
    if cfg['model_type'] == 'mistral':
        window, windowed = cfg.get('sliding_window'), [True] * L
    elif cfg['model_type'] == 'qwen2' and cfg.get('use_sliding_window', False):
        window, windowed = cfg.get('sliding_window'), [i >= cfg.get('max_window_layers', 28) for i in range(L)]
    else:
        window, windowed = None, [False] * L
    windowed_mask = causal
    if window:  # HF's eager/sdpa mask: query i sees keys j with i - window < j <= i
        qi, kj = torch.arange(S)[:, None], torch.arange(S)[None, :]
        windowed_mask = causal.masked_fill(kj <= qi - window, float('-inf'))
    x = p['model.embed_tokens.weight'][ids]
    for i in range(L):
        pre = f'model.layers.{i}'
        mask = windowed_mask if windowed[i] else causal
        a = rms(x, p[f'{pre}.input_layernorm.weight'])
        q = F.linear(a, p[f'{pre}.self_attn.q_proj.weight'], p.get(f'{pre}.self_attn.q_proj.bias') if bias else None).view(B, S, hq, hd)
        k = F.linear(a, p[f'{pre}.self_attn.k_proj.weight'], p.get(f'{pre}.self_attn.k_proj.bias') if bias else None).view(B, S, hkv, hd)
        v = F.linear(a, p[f'{pre}.self_attn.v_proj.weight'], p.get(f'{pre}.self_attn.v_proj.bias') if bias else None).view(B, S, hkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, S, hq * hd)
        x = x + F.linear(o, p[f'{pre}.self_attn.o_proj.weight'])
        m = rms(x, p[f'{pre}.post_attention_layernorm.weight'])
        g = F.linear(m, p[f'{pre}.mlp.gate_proj.weight'])
        u = F.linear(m, p[f'{pre}.mlp.up_proj.weight'])
        x = x + F.linear(F.silu(g) * u, p[f'{pre}.mlp.down_proj.weight'])
    x = rms(x, p['model.norm.weight'])
    head = p['model.embed_tokens.weight'] if cfg.get('tie_word_embeddings', False) else p['lm_head.weight']
    return F.linear(x, head)


def gpt2_params(cfg):
    d, L, V, P = cfg['n_embd'], cfg['n_layer'], cfg['vocab_size'], cfg['n_positions']
    p = {'transformer.wte.weight': torch.randn(V, d) * 0.5, 'transformer.wpe.weight': torch.randn(P, d) * 0.2}
    for i in range(L):
        pre = f'transformer.h.{i}'
        p[f'{pre}.ln_1.weight'] = 1 + 0.1 * torch.randn(d)
        p[f'{pre}.ln_1.bias'] = 0.1 * torch.randn(d)
        p[f'{pre}.attn.c_attn.weight'] = torch.randn(d, 3 * d) * 0.2
        p[f'{pre}.attn.c_attn.bias'] = torch.randn(3 * d) * 0.1
        p[f'{pre}.attn.c_proj.weight'] = torch.randn(d, d) * 0.2
        p[f'{pre}.attn.c_proj.bias'] = torch.randn(d) * 0.1
        p[f'{pre}.ln_2.weight'] = 1 + 0.1 * torch.randn(d)
        p[f'{pre}.ln_2.bias'] = 0.1 * torch.randn(d)
        p[f'{pre}.mlp.c_fc.weight'] = torch.randn(d, 4 * d) * 0.2
        p[f'{pre}.mlp.c_fc.bias'] = torch.randn(4 * d) * 0.1
        p[f'{pre}.mlp.c_proj.weight'] = torch.randn(4 * d, d) * 0.2
        p[f'{pre}.mlp.c_proj.bias'] = torch.randn(d) * 0.1
    p['transformer.ln_f.weight'] = 1 + 0.1 * torch.randn(d)
    p['transformer.ln_f.bias'] = 0.1 * torch.randn(d)
    return p


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_forward(cfg, p, ids):
    B, S = ids.shape
    d, H, L = cfg['n_embd'], cfg['n_head'], cfg['n_layer']
    hd = d // H
    eps = cfg['layer_norm_epsilon']
    mask = torch.full((S, S), float('-inf')).triu(1)
    x = p['transformer.wte.weight'][ids] + p['transformer.wpe.weight'][torch.arange(S)][None]
    for i in range(L):
        pre = f'transformer.h.{i}'
        a = F.layer_norm(x, (d,), p[f'{pre}.ln_1.weight'], p[f'{pre}.ln_1.bias'], eps)
        qkv = a @ p[f'{pre}.attn.c_attn.weight'] + p[f'{pre}.attn.c_attn.bias']
        q, k, v = qkv.split(d, dim=2)
        q, k, v = (t.view(B, S, H, hd).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, S, d)
        x = x + o @ p[f'{pre}.attn.c_proj.weight'] + p[f'{pre}.attn.c_proj.bias']
        m = F.layer_norm(x, (d,), p[f'{pre}.ln_2.weight'], p[f'{pre}.ln_2.bias'], eps)
        x = x + gelu_new(m @ p[f'{pre}.mlp.c_fc.weight'] + p[f'{pre}.mlp.c_fc.bias']) @ p[f'{pre}.mlp.c_proj.weight'] + p[f'{pre}.mlp.c_proj.bias']
    x = F.layer_norm(x, (d,), p['transformer.ln_f.weight'], p['transformer.ln_f.bias'], eps)
    return F.linear(x, p['transformer.wte.weight'])


def no_decay(name):
    return name.endswith('.bias') or 'norm' in name or '.ln_' in name or 'ln_f' in name or 'embed_tokens' in name or 'wte' in name or 'wpe' in name


def write(name, cfg, params, forward, B=2, S=9):
    V = cfg['vocab_size']
    rows = torch.randint(0, V, (B, S + 1), dtype=torch.int64)
    labels = rows.clone()
    labels[0, :3] = -100  # a masked prompt
    labels[1, -2:] = -100  # padding
    ids, targets = rows[:, :-1], labels[:, 1:]
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    logits = forward(cfg, p, ids)
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in p.items()}
    # 5 AdamW steps on the same batch.
    q = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    decay = [v for k, v in q.items() if not no_decay(k)]
    nodecay = [v for k, v in q.items() if no_decay(k)]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': nodecay, 'weight_decay': 0.0}], lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    steps = []
    for _ in range(5):
        opt.zero_grad()
        l = F.cross_entropy(forward(cfg, q, ids).reshape(-1, V), targets.reshape(-1), ignore_index=-100)
        l.backward()
        steps.append(l.item())
        opt.step()
    tensors, blob = [], bytearray()

    def add(tname, t):
        t = t.detach().contiguous().float()
        tensors.append({'name': tname, 'shape': list(t.shape), 'offset': len(blob) // 4})
        blob.extend(struct.pack(f'<{t.numel()}f', *t.flatten().tolist()))

    for k, v in params.items():
        add('param:' + k, v)
    for k, v in grads.items():
        add('grad:' + k, v)
    add('logits', logits)
    meta = {
        'config': cfg,
        'ids': ids.tolist(),
        'labels': targets.tolist(),
        'loss': loss.item(),
        'adamw': {'lr': 1e-2, 'beta1': 0.9, 'beta2': 0.95, 'eps': 1e-8, 'weight_decay': 0.1, 'losses': steps},
        'tensors': tensors,
        'torch': torch.__version__,
    }
    with open(os.path.join(OUT, name + '.json'), 'w') as f:
        json.dump(meta, f)
    with open(os.path.join(OUT, name + '.bin'), 'wb') as f:
        f.write(blob)
    print(name, 'loss', loss.item(), 'floats', len(blob) // 4)


if __name__ == '__main__':  # bf16_parity.py imports the model code without writing these fixtures
    os.makedirs(OUT, exist_ok=True)
    llama_gqa = {
        'model_type': 'llama', 'vocab_size': 61, 'hidden_size': 32, 'intermediate_size': 40, 'num_hidden_layers': 2,
        'num_attention_heads': 4, 'num_key_value_heads': 2, 'rms_norm_eps': 1e-5, 'rope_theta': 500000.0,
        'max_position_embeddings': 64, 'tie_word_embeddings': False,
        'rope_scaling': {'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0, 'original_max_position_embeddings': 16},
    }
    write('llama_gqa', llama_gqa, llama_params(llama_gqa), llama_forward)
    qwen_tied = {
        'model_type': 'qwen2', 'vocab_size': 50, 'hidden_size': 24, 'intermediate_size': 36, 'num_hidden_layers': 2,
        'num_attention_heads': 3, 'num_key_value_heads': 1, 'rms_norm_eps': 1e-6, 'rope_theta': 10000.0,
        'max_position_embeddings': 64, 'tie_word_embeddings': True,
    }
    write('qwen2_tied', qwen_tied, llama_params(qwen_tied), llama_forward)
    gpt2 = {'model_type': 'gpt2', 'vocab_size': 57, 'n_embd': 32, 'n_head': 4, 'n_layer': 2, 'n_positions': 16, 'layer_norm_epsilon': 1e-5}
    write('gpt2', gpt2, gpt2_params(gpt2), gpt2_forward)
