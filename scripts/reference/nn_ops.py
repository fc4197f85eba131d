#!/usr/bin/python3
"""Writes test/fixtures/nn_ops.json: PyTorch reference outputs and gradients of sftkit's fused NN kernels
(RMSNorm, LayerNorm, RoPE, SwiGLU, causal attention, final projection + cross-entropy).

Run with Debian's python3 (torch 1.13):  /usr/bin/python3 scripts/reference/nn_ops.py
Inputs are float32 values; the reference math runs in float64 autograd on them, and every tensor is stored
as float32 (shortest repr), flattened row-major.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'nn_ops.json')
VERSION = 1
gen = torch.Generator().manual_seed(20240601)


def rand(*shape, lo=-1.0, hi=1.0):
    """float32 values, returned as float64 tensors (exactly the float32 values)."""
    x = torch.rand(*shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo
    return x.double()


def leaf(*shape, lo=-1.0, hi=1.0):
    return rand(*shape, lo=lo, hi=hi).requires_grad_(True)


def arr(t):
    a = t.detach().to(torch.float32).numpy().ravel()
    return [float(str(v)) for v in a]  # shortest float32 repr, exact after Math.fround


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


# --- RMSNorm (HF LlamaRMSNorm)
def rmsnorm_case(rows, dim, eps):
    x, w, dy = leaf(rows, dim), leaf(dim, lo=0.5, hi=1.5), rand(rows, dim)
    var = x.pow(2).mean(-1, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    y = w * (x * rstd)
    y.backward(dy)
    return {'rows': rows, 'dim': dim, 'eps': eps, 'x': arr(x), 'w': arr(w), 'dy': arr(dy),
            'y': arr(y), 'rstd': arr(rstd), 'dx': arr(x.grad), 'dw': arr(w.grad)}


# --- LayerNorm (torch, biased variance), with or without weight and bias
def layernorm_case(rows, dim, eps, affine):
    x, dy = leaf(rows, dim), rand(rows, dim)
    w = leaf(dim, lo=0.5, hi=1.5) if affine else None
    b = leaf(dim) if affine else None
    y = F.layer_norm(x, (dim,), w, b, eps)
    y.backward(dy)
    mean = x.detach().mean(-1)
    rstd = torch.rsqrt(x.detach().var(-1, unbiased=False) + eps)
    case = {'rows': rows, 'dim': dim, 'eps': eps, 'affine': affine, 'x': arr(x), 'dy': arr(dy),
            'y': arr(y), 'mean': arr(mean), 'rstd': arr(rstd), 'dx': arr(x.grad)}
    if affine:
        case.update({'w': arr(w), 'b': arr(b), 'dw': arr(w.grad), 'db': arr(b.grad)})
    return case


# --- RoPE (HF rotate_half on the first rot_dim dims of each head)
def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_case(rows, H, D, rot_dim, pos_count, positions, theta=10000.0):
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim))
    freqs = torch.outer(torch.arange(pos_count, dtype=torch.float64), inv_freq)   # (pos_count, rot_dim/2)
    cos_t = freqs.cos().float().double()
    sin_t = freqs.sin().float().double()
    pos = torch.tensor(positions, dtype=torch.long)
    x, dy = leaf(rows, H, D), rand(rows, H, D)
    cos = torch.cat((cos_t[pos], cos_t[pos]), dim=-1)[:, None, :]   # (rows, 1, rot_dim), as HF builds it
    sin = torch.cat((sin_t[pos], sin_t[pos]), dim=-1)[:, None, :]
    x_rot, x_pass = x[..., :rot_dim], x[..., rot_dim:]
    y = torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)
    y.backward(dy)
    return {'rows': rows, 'H': H, 'D': D, 'rotDim': rot_dim, 'posCount': pos_count, 'theta': theta,
            'positions': positions, 'cos': arr(cos_t), 'sin': arr(sin_t), 'x': arr(x), 'dy': arr(dy),
            'y': arr(y), 'dx': arr(x.grad)}


# --- SwiGLU
def swiglu_case(n, span):
    gate, up, dout = leaf(n, lo=-span, hi=span), leaf(n), rand(n)
    out = F.silu(gate) * up
    out.backward(dout)
    return {'n': n, 'gate': arr(gate), 'up': arr(up), 'dout': arr(dout), 'out': arr(out),
            'dgate': arr(gate.grad), 'dup': arr(up.grad)}


# --- attention: explicit softmax(Q K^T scale + mask) V, GQA by repeating kv heads
def attention_case(name, B, T, S, Hq, Hkv, D, q_offset=0, causal=True, q_seg=None, k_seg=None):
    q, k, v = leaf(B, T, Hq, D), leaf(B, S, Hkv, D), leaf(B, S, Hkv, D)
    dout = rand(B, T, Hq, D)
    scale = 1.0 / math.sqrt(D)
    G = Hq // Hkv
    qh = q.transpose(1, 2)                                          # (B, Hq, T, D)
    kh = k.transpose(1, 2).repeat_interleave(G, dim=1)              # (B, Hq, S, D)
    vh = v.transpose(1, 2).repeat_interleave(G, dim=1)
    scores = qh @ kh.transpose(-1, -2) * scale                      # (B, Hq, T, S)
    visible = torch.ones(B, T, S, dtype=torch.bool)
    if causal:
        t = torch.arange(T)[:, None] + q_offset
        s = torch.arange(S)[None, :]
        visible &= (s <= t)[None]
    if q_seg is not None:
        qs, ks = torch.tensor(q_seg), torch.tensor(k_seg)
        visible &= qs[:, :, None] == ks[:, None, :]
    assert visible.any(-1).all(), 'every query must see a key (torch softmax would give NaN)'
    scores = scores.masked_fill(~visible[:, None], float('-inf'))
    lse = torch.logsumexp(scores, dim=-1)                           # (B, Hq, T)
    p = torch.softmax(scores, dim=-1)
    out = (p @ vh).transpose(1, 2)                                  # (B, T, Hq, D)
    out.backward(dout)
    case = {'name': name, 'B': B, 'T': T, 'S': S, 'Hq': Hq, 'Hkv': Hkv, 'D': D, 'qOffset': q_offset,
            'causal': causal, 'scale': scale, 'q': arr(q), 'k': arr(k), 'v': arr(v), 'dout': arr(dout),
            'out': arr(out), 'lse': arr(lse), 'dq': arr(q.grad), 'dk': arr(k.grad), 'dv': arr(v.grad)}
    if q_seg is not None:
        case['qSeg'] = ints(torch.tensor(q_seg))
        case['kSeg'] = ints(torch.tensor(k_seg))
    return case


# --- final projection + cross-entropy (sum over trained tokens, ignore_index -100)
def cross_entropy_case(name, N, d, V, labels, grad_scale=None):
    h, w = leaf(N, d), leaf(V, d, lo=-0.5, hi=0.5)
    y = torch.tensor(labels, dtype=torch.long)
    logits = F.linear(h, w)
    loss_sum = F.cross_entropy(logits, y, reduction='sum', ignore_index=-100)
    count = int((y != -100).sum())
    if grad_scale is None:
        grad_scale = 1.0 / count
    (loss_sum * grad_scale).backward()
    lse = torch.logsumexp(logits.detach(), dim=-1)
    picked = logits.detach().gather(1, y.clamp(min=0)[:, None])[:, 0]
    row_loss = torch.where(y != -100, lse - picked, torch.zeros_like(lse))
    return {'name': name, 'N': N, 'd': d, 'V': V, 'labels': labels, 'gradScale': grad_scale,
            'h': arr(h), 'w': arr(w), 'lossSum': float(loss_sum), 'count': count, 'lse': arr(lse),
            'rowLoss': arr(row_loss), 'dh': arr(h.grad), 'dw': arr(w.grad)}


def main():
    torch.set_num_threads(1)
    seg_a = [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 0, 0]
    seg_b = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    fixtures = {
        'version': VERSION,
        'generator': 'scripts/reference/nn_ops.py (torch %s, float64 autograd on float32 inputs)' % torch.__version__,
        'rmsnorm': [rmsnorm_case(5, 19, 1e-6), rmsnorm_case(3, 64, 1e-5)],
        'layernorm': [layernorm_case(5, 19, 1e-5, True), layernorm_case(4, 33, 1e-5, False)],
        'rope': [
            rope_case(10, 3, 16, 16, 24, [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]),
            rope_case(6, 2, 12, 8, 16, [5, 0, 15, 3, 3, 9]),                     # partial rotary
            rope_case(3, 1, 64, 64, 40, [39, 17, 2], theta=500000.0),
        ],
        'swiglu': [swiglu_case(37, 4.0), swiglu_case(100, 12.0)],
        'attention': [
            attention_case('mha causal', 2, 9, 9, 2, 2, 8),
            attention_case('gqa causal', 1, 13, 13, 4, 2, 16),
            attention_case('head dim 64', 1, 5, 5, 2, 1, 64),
            attention_case('mqa full (not causal)', 1, 5, 7, 3, 1, 5, causal=False),
            attention_case('q_offset (cached keys)', 2, 3, 10, 2, 1, 16, q_offset=7),
            attention_case('segment ids (packed rows)', 2, 12, 12, 2, 2, 8, q_seg=[seg_a, seg_b], k_seg=[seg_a, seg_b]),
            attention_case('tiles (T, S > one tile)', 1, 70, 70, 2, 1, 8),
        ],
        'crossEntropy': [
            cross_entropy_case('small with ignored rows', 9, 16, 37, [3, -100, 36, 0, 17, -100, 5, 5, 21]),
            cross_entropy_case('vocab 130, grad scale 0.5', 7, 20, 130, [129, 64, 0, -100, 77, 1, 128], grad_scale=0.5),
        ],
    }
    text = json.dumps(fixtures, separators=(',', ':'))
    tmp = OUT + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text + '\n')
    os.replace(tmp, OUT)
    print('wrote %s (%d bytes)' % (os.path.relpath(OUT), len(text) + 1), file=sys.stderr)


if __name__ == '__main__':
    main()
