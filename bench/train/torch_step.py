#!/usr/bin/python3
"""The PyTorch side of bench/train: the same Llama (HF math, plain PyTorch 1.13), AdamW, random tokens.
Tuned as DESIGN.md says (the environment comes from bench/lib/torch-env.ts): 2 threads, OMP_WAIT_POLICY=PASSIVE,
tcmalloc preloaded when installed, AdamW's multi-tensor (foreach) path. Prints one JSON line.
--bf16 runs forward and loss under torch.autocast('cpu', dtype=torch.bfloat16) (fp32 weights and AdamW)."""
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

bf16 = '--bf16' in sys.argv
argv = [a for a in sys.argv[1:] if not a.startswith('--')]
name = argv[0] if len(argv) > 0 else 'S'
steps = int(argv[1]) if len(argv) > 1 else 5
threads = int(os.environ.get('BENCH_THREADS', '2'))
torch.set_num_threads(threads)
c = json.load(open(os.path.join(os.path.dirname(__file__), 'configs.json')))[name]
D, L, H, FF, V, S, B = c['dim'], c['layers'], c['heads'], c['ffn'], c['vocab'], c['seq'], c['batch']
hd = D // H


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

    def forward(self, x, cos, sin, mask):
        a = self.n1(x)
        q = self.q(a).view(B, S, H, hd)
        k = self.k(a).view(B, S, H, hd)
        v = self.v(a).view(B, S, H, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, S, D)
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
        f = torch.arange(S).float()[:, None] * inv[None]
        e = torch.cat((f, f), -1)
        self.register_buffer('cos', e.cos()[None, :, None, :])
        self.register_buffer('sin', e.sin()[None, :, None, :])
        self.register_buffer('mask', torch.full((S, S), float('-inf')).triu(1))

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        return self.head(self.norm(x))


torch.manual_seed(0)
model = Llama()
# foreach: the multi-tensor AdamW (1.13 defaults to the per-parameter loop on CPU).
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, foreach=True)
ids = torch.randint(0, V, (B, S))
labels = torch.randint(0, V, (B, S))


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(ids).view(-1, V), labels.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def median(xs):
    return sorted(xs)[len(xs) // 2]


step()
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
    model(ids)
    ftimes = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model(ids)
        ftimes.append(time.perf_counter() - t0)
med = median(times)
params = sum(p.numel() for p in model.parameters())
print(json.dumps({'engine': 'pytorch ' + torch.__version__ + (' bf16 autocast' if bf16 else ''), 'config': name, 'params': params, 'steps': steps, 'median_s': med,
                  'tokens_per_s': B * S / med, 'fwd_tokens_per_s': B * S / median(ftimes),
                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'tcmalloc': 'tcmalloc' in os.environ.get('LD_PRELOAD', '')}))
