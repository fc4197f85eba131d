"""The PyTorch Llama of the benches (HF math in plain PyTorch 1.13), shared by bench/train/torch_step.py and
bench/generate/torch_gen.py so that both time the same model. Optional KV cache, preallocated by the caller
and written in place (no torch.cat of the whole past per decoded token)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, D, H, FF):
        super().__init__()
        self.H, self.hd = H, D // H
        self.n1, self.n2 = RMSNorm(D), RMSNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask, kv=None, past=0):
        B, S, D = x.shape
        a = self.n1(x)
        q = self.q(a).view(B, S, self.H, self.hd)
        k = self.k(a).view(B, S, self.H, self.hd)
        v = self.v(a).view(B, S, self.H, self.hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, S, hd)
        if kv is not None:
            kc, vc = kv  # (B, H, maxLen, hd)
            kc[:, :, past:past + S] = k
            vc[:, :, past:past + S] = v
            k, v = kc[:, :, :past + S], vc[:, :, :past + S]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        if mask is not None:
            att = att + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, S, D)
        x = x + self.o(o)
        m = self.n2(x)
        return x + self.down(F.silu(self.gate(m)) * self.up(m))


class Llama(nn.Module):
    """c: a bench/train/configs.json entry; max_pos: the longest position the RoPE tables cover."""

    def __init__(self, c, max_pos):
        super().__init__()
        D, H, V = c['dim'], c['heads'], c['vocab']
        hd = D // H
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList(Block(D, H, c['ffn']) for _ in range(c['layers']))
        self.norm = RMSNorm(D)
        self.head = nn.Linear(D, V, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.arange(max_pos).float()[:, None] * inv[None]
        e = torch.cat((f, f), -1)
        self.register_buffer('cos', e.cos()[None, :, None, :])
        self.register_buffer('sin', e.sin()[None, :, None, :])

    def forward(self, ids, cache=None, past=0, last_only=False):
        """Logits (B, S, V) for ids (B, S) following `past` cached tokens; (B, V) of the last position with last_only."""
        S = ids.shape[1]
        cos, sin = self.cos[:, past:past + S], self.sin[:, past:past + S]
        # Causal mask only when several queries come at once; one decoded query sees every key.
        mask = torch.full((S, past + S), float('-inf')).triu(past + 1) if S > 1 else None
        x = self.emb(ids)
        for i, b in enumerate(self.blocks):
            x = b(x, cos, sin, mask, cache[i] if cache is not None else None, past)
        return self.head(self.norm(x[:, -1] if last_only else x))
