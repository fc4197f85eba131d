#!/usr/bin/python3
"""The PyTorch side of bench/generate: the bench/train Llama (HF math, plain PyTorch 1.13) with a preallocated
KV cache, timing forward-only prefill and greedy decoding under torch.inference_mode(). Prints one JSON line.
Usage: torch_gen.py CONFIG --prefill B S --decode B P N [--decode ...] --runs R"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get('BENCH_THREADS', '2')))
argv = sys.argv[1:]
name = argv[0]
c = json.load(open(os.path.join(os.path.dirname(__file__), '..', 'train', 'configs.json')))[name]
D, L, H, FF, V = c['dim'], c['layers'], c['heads'], c['ffn'], c['vocab']
hd = D // H
runs = int(argv[argv.index('--runs') + 1]) if '--runs' in argv else 3
prefills = [(int(argv[i + 1]), int(argv[i + 2])) for i, a in enumerate(argv) if a == '--prefill']
decodes = [(int(argv[i + 1]), int(argv[i + 2]), int(argv[i + 3])) for i, a in enumerate(argv) if a == '--decode']
MAX_POS = 4096


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


def rotate_half(x):
    return torch.cat((-x[..., hd // 2:], x[..., :hd // 2]), dim=-1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(D), RMSNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask, kv, past):
        B, S, _ = x.shape
        a = self.n1(x)
        q = self.q(a).view(B, S, H, hd)
        k = self.k(a).view(B, S, H, hd)
        v = self.v(a).view(B, S, H, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, S, hd)
        kc, vc = kv  # (B, H, maxLen, hd), written in place: no torch.cat of the whole past per step
        kc[:, :, past:past + S] = k
        vc[:, :, past:past + S] = v
        att = (q @ kc[:, :, :past + S].transpose(-1, -2)) / math.sqrt(hd)
        if mask is not None:
            att = att + mask
        o = (att.softmax(-1) @ vc[:, :, :past + S]).transpose(1, 2).reshape(B, S, D)
        x = x + self.o(o)
        m = self.n2(x)
        return x + self.down(F.silu(self.gate(m)) * self.up(m))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.norm = RMSNorm(D)
        self.head = nn.Linear(D, V, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.arange(MAX_POS).float()[:, None] * inv[None]
        e = torch.cat((f, f), -1)
        self.register_buffer('cos', e.cos()[None, :, None, :])
        self.register_buffer('sin', e.sin()[None, :, None, :])

    def forward(self, ids, cache, past):
        """Logits of the last position (B, V) for ids (B, S) following `past` cached tokens."""
        S = ids.shape[1]
        cos, sin = self.cos[:, past:past + S], self.sin[:, past:past + S]
        # Causal mask only when several queries come at once (prefill); one decoded query sees every key.
        mask = torch.full((S, past + S), float('-inf')).triu(past + 1) if S > 1 else None
        x = self.emb(ids)
        for b, kv in zip(self.blocks, cache):
            x = b(x, cos, sin, mask, kv, past)
        return self.head(self.norm(x[:, -1]))


def generate(model, prompt, new_tokens):
    """Greedy decoding; returns the new tokens (B, new_tokens)."""
    B, P = prompt.shape
    cache = [(torch.zeros(B, H, P + new_tokens, hd), torch.zeros(B, H, P + new_tokens, hd)) for _ in range(L)]
    nxt = model(prompt, cache, 0).argmax(-1)
    out = [nxt]
    for t in range(1, new_tokens):
        nxt = model(nxt[:, None], cache, P + t - 1).argmax(-1)
        out.append(nxt)
    return torch.stack(out, 1)


def median(xs):
    return sorted(xs)[len(xs) // 2]


def timed(fn):
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return median(ts)


torch.manual_seed(0)
model = Llama().eval()
result = {'engine': 'pytorch ' + torch.__version__, 'config': name, 'runs': runs, 'prefill': [], 'decode': [],
          'tcmalloc': 'tcmalloc' in os.environ.get('LD_PRELOAD', '')}
with torch.inference_mode():
    for B, S in prefills:
        ids = torch.randint(0, V, (B, S))
        s = timed(lambda: generate(model, ids, 1))
        result['prefill'].append({'batch': B, 'seq': S, 'seconds': s, 'tokens_per_s': B * S / s})
    for B, P, N in decodes:
        ids = torch.randint(0, V, (B, P))
        # Decoding time = generating N tokens minus the prefill with its first token, as for sftkit.
        first = timed(lambda: generate(model, ids, 1))
        full = timed(lambda: generate(model, ids, N))
        result['decode'].append({'batch': B, 'prompt': P, 'new': N, 'seconds': full - first, 'tokens_per_s': B * (N - 1) / (full - first)})
print(json.dumps(result))
