#!/usr/bin/python3
"""Writes PyTorch reference fixtures for LoRA on sftkit's Llama and GPT-2 (test/fixtures/models/*_lora.*).

PEFT's LoRA written out in plain PyTorch (no PEFT needed): for a targeted linear with weight W,
    y = x·Wᵀ (+ bias) + s · dropout(x)·Aᵀ·Bᵀ,   s = alpha / r   (alpha / sqrt(r) with use_rslora),
A (r, in) and B (out, r) in PEFT's key names (`base_model.model.<module>.lora_A.weight`). GPT-2's Conv1D
stores W as (in, out) (PEFT's fan_in_fan_out), its A and B keep the (r, in) / (out, r) shapes. Dropout is 0
here so the fixture is deterministic. B is random (not PEFT's zero init) so that the gradient of A is not zero.
The base weights are frozen (requires_grad False); the fixture holds the logits, the mean loss, the
gradients of every A and B, and the losses and final adapters of 5 AdamW steps (decay 0.1 on A and B).
Run with Debian's python3-torch:  /usr/bin/python3 scripts/reference/lora_parity.py
Fixture format: as model_parity.py (NAME.json + NAME.bin, little-endian float32).
"""
import json
import math
import os
import re
import struct

import torch
import torch.nn.functional as F

from model_parity import OUT, gelu_new, gpt2_params, llama_inv_freq, llama_params, rotate_half

torch.manual_seed(1)
torch.set_num_threads(1)


def lora_linear(p, lora, name, x, conv1d=False):
    """x·Wᵀ + b (Conv1D: x·W + b) plus the LoRA term when `name` is targeted."""
    w = p[name + '.weight']
    b = p.get(name + '.bias')
    y = (x @ w if conv1d else F.linear(x, w)) + (b if b is not None else 0)
    a_key = f'base_model.model.{name}.lora_A.weight'
    if a_key in lora['tensors']:
        A = lora['tensors'][a_key]
        B = lora['tensors'][f'base_model.model.{name}.lora_B.weight']
        y = y + lora['scale'] * F.linear(F.linear(x, A), B)
    return y


def llama_forward(cfg, p, lora, ids):
    B_, S = ids.shape
    d, L = cfg['hidden_size'], cfg['num_hidden_layers']
    hq, hkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd = d // hq
    eps = cfg['rms_norm_eps']

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    inv = llama_inv_freq(cfg)
    freqs = torch.arange(S).float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    mask = torch.full((S, S), float('-inf')).triu(1)
    x = p['model.embed_tokens.weight'][ids]
    for i in range(L):
        pre = f'model.layers.{i}'
        a = rms(x, p[f'{pre}.input_layernorm.weight'])
        q = lora_linear(p, lora, f'{pre}.self_attn.q_proj', a).view(B_, S, hq, hd)
        k = lora_linear(p, lora, f'{pre}.self_attn.k_proj', a).view(B_, S, hkv, hd)
        v = lora_linear(p, lora, f'{pre}.self_attn.v_proj', a).view(B_, S, hkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B_, S, hq * hd)
        x = x + lora_linear(p, lora, f'{pre}.self_attn.o_proj', o)
        m = rms(x, p[f'{pre}.post_attention_layernorm.weight'])
        g = lora_linear(p, lora, f'{pre}.mlp.gate_proj', m)
        u = lora_linear(p, lora, f'{pre}.mlp.up_proj', m)
        x = x + lora_linear(p, lora, f'{pre}.mlp.down_proj', F.silu(g) * u)
    x = rms(x, p['model.norm.weight'])
    head = p['model.embed_tokens.weight'] if cfg.get('tie_word_embeddings', False) else p['lm_head.weight']
    return F.linear(x, head)


def gpt2_forward(cfg, p, lora, ids):
    B_, S = ids.shape
    d, H, L = cfg['n_embd'], cfg['n_head'], cfg['n_layer']
    hd = d // H
    eps = cfg['layer_norm_epsilon']
    mask = torch.full((S, S), float('-inf')).triu(1)
    x = p['transformer.wte.weight'][ids] + p['transformer.wpe.weight'][torch.arange(S)][None]
    for i in range(L):
        pre = f'transformer.h.{i}'
        a = F.layer_norm(x, (d,), p[f'{pre}.ln_1.weight'], p[f'{pre}.ln_1.bias'], eps)
        q, k, v = lora_linear(p, lora, f'{pre}.attn.c_attn', a, conv1d=True).split(d, dim=2)
        q, k, v = (t.view(B_, S, H, hd).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B_, S, d)
        x = x + lora_linear(p, lora, f'{pre}.attn.c_proj', o, conv1d=True)
        m = F.layer_norm(x, (d,), p[f'{pre}.ln_2.weight'], p[f'{pre}.ln_2.bias'], eps)
        h = gelu_new(lora_linear(p, lora, f'{pre}.mlp.c_fc', m, conv1d=True))
        x = x + lora_linear(p, lora, f'{pre}.mlp.c_proj', h, conv1d=True)
    x = F.layer_norm(x, (d,), p['transformer.ln_f.weight'], p['transformer.ln_f.bias'], eps)
    return F.linear(x, p['transformer.wte.weight'])


def make_adapters(params, targets, r, alpha, use_rslora, conv1d):
    """A and B for every `<module>.weight` whose last module name is in targets (PEFT's suffix match)."""
    tensors = {}
    for key, w in params.items():
        m = re.match(r'^(.*)\.weight$', key)
        if not m or w.dim() != 2 or m.group(1).split('.')[-1] not in targets:
            continue
        fan_in, fan_out = (w.shape[0], w.shape[1]) if conv1d else (w.shape[1], w.shape[0])
        A = torch.empty(r, fan_in)
        torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))  # PEFT's init of lora_A
        tensors[f'base_model.model.{m.group(1)}.lora_A.weight'] = A
        tensors[f'base_model.model.{m.group(1)}.lora_B.weight'] = torch.randn(fan_out, r) * 0.1
    scale = alpha / math.sqrt(r) if use_rslora else alpha / r
    return {'tensors': tensors, 'scale': scale, 'r': r, 'alpha': alpha, 'use_rslora': use_rslora, 'targets': targets}


def write(name, cfg, params, forward, lora, B=2, S=9):
    V = cfg['vocab_size']
    rows = torch.randint(0, V, (B, S + 1), dtype=torch.int64)
    labels = rows.clone()
    labels[0, :3] = -100
    labels[1, -2:] = -100
    ids, targets = rows[:, :-1], labels[:, 1:]

    def run(adapters):
        live = dict(lora, tensors=adapters)
        return forward(cfg, params, live, ids)

    ad = {k: v.clone().requires_grad_(True) for k, v in lora['tensors'].items()}
    logits = run(ad)
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in ad.items()}

    q = {k: v.clone().requires_grad_(True) for k, v in lora['tensors'].items()}
    opt = torch.optim.AdamW(list(q.values()), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    steps = []
    for _ in range(5):
        opt.zero_grad()
        l = F.cross_entropy(run(q).reshape(-1, V), targets.reshape(-1), ignore_index=-100)
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
    for k, v in lora['tensors'].items():
        add('lora:' + k, v)
    for k, v in grads.items():
        add('grad:' + k, v)
    for k, v in q.items():
        add('after5:' + k, v)
    add('logits', logits)
    meta = {
        'config': cfg,
        'lora': {'r': lora['r'], 'alpha': lora['alpha'], 'use_rslora': lora['use_rslora'], 'dropout': 0.0,
                 'target_modules': lora['targets'], 'scale': lora['scale']},
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
    print(name, 'loss', loss.item(), 'adapters', len(lora['tensors']), 'floats', len(blob) // 4)


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    llama = {
        'model_type': 'llama', 'vocab_size': 61, 'hidden_size': 32, 'intermediate_size': 40, 'num_hidden_layers': 2,
        'num_attention_heads': 4, 'num_key_value_heads': 2, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0,
        'max_position_embeddings': 64, 'tie_word_embeddings': False,
    }
    lp = llama_params(llama)
    every = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
    write('llama_lora', llama, lp, llama_forward, make_adapters(lp, every, 4, 8, False, False))
    write('llama_rslora', llama, lp, llama_forward, make_adapters(lp, ['q_proj', 'v_proj'], 4, 8, True, False))
    gpt2 = {'model_type': 'gpt2', 'vocab_size': 57, 'n_embd': 32, 'n_head': 4, 'n_layer': 2, 'n_positions': 16, 'layer_norm_epsilon': 1e-5}
    gp = gpt2_params(gpt2)
    write('gpt2_lora', gpt2, gp, gpt2_forward, make_adapters(gp, ['c_attn', 'c_proj', 'c_fc'], 4, 16, False, True))
