#!/usr/bin/python3
"""The PyTorch side of bench/train: the same Llama (HF math, plain PyTorch 1.13), AdamW, random tokens.
Tuned as DESIGN.md says (the environment comes from bench/lib/torch-env.ts): 2 threads, OMP_WAIT_POLICY=PASSIVE,
tcmalloc preloaded when installed, AdamW's multi-tensor (foreach) path. Prints one JSON line.
--bf16 runs forward and loss under torch.autocast('cpu', dtype=torch.bfloat16) (fp32 weights and AdamW).
--lora R: LoRA written by hand (PEFT's formula) on every linear but the head, rank R, alpha 2R; the base has
requires_grad False, AdamW over the adapters only."""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from torch_llama import Llama  # noqa: E402

bf16 = '--bf16' in sys.argv
lora_rank = int(sys.argv[sys.argv.index('--lora') + 1]) if '--lora' in sys.argv else 0
argv = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith('--') and sys.argv[i - 1] != '--lora']
name = argv[0] if len(argv) > 0 else 'S'
steps = int(argv[1]) if len(argv) > 1 else 5
threads = int(os.environ.get('BENCH_THREADS', '2'))
torch.set_num_threads(threads)
c = json.load(open(os.path.join(os.path.dirname(__file__), 'configs.json')))[name]
V, S, B = c['vocab'], c['seq'], c['batch']



class LoraLinear(torch.nn.Module):
    """y = base(x) + (alpha/r)·x·Aᵀ·Bᵀ, A Kaiming-uniform (a=√5), B zero; the base frozen."""

    def __init__(self, base, r):
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        self.A = torch.nn.Parameter(torch.empty(r, base.in_features))
        torch.nn.init.kaiming_uniform_(self.A, a=5 ** 0.5)
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        self.s = 2.0

    def forward(self, x):
        return self.base(x) + self.s * F.linear(F.linear(x, self.A), self.B)


torch.manual_seed(0)
model = Llama(c, S)
if lora_rank > 0:
    for p in model.parameters():
        p.requires_grad_(False)
    for blk in model.blocks:
        for attr in ('q', 'k', 'v', 'o', 'gate', 'up', 'down'):
            setattr(blk, attr, LoraLinear(getattr(blk, attr), lora_rank))
trainable = [p for p in model.parameters() if p.requires_grad]
# foreach: the multi-tensor AdamW (1.13 defaults to the per-parameter loop on CPU).
opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.1, foreach=True)
ids = torch.randint(0, V, (B, S))
labels = torch.randint(0, V, (B, S))


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(ids).view(-1, V), labels.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
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
print(json.dumps({'engine': 'pytorch ' + torch.__version__ + (' bf16 autocast' if bf16 else '') + (f' LoRA r{lora_rank}' if lora_rank else ''), 'config': name, 'params': params, 'steps': steps, 'median_s': med,
                  'tokens_per_s': B * S / med, 'fwd_tokens_per_s': B * S / median(ftimes),
                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'tcmalloc': 'tcmalloc' in os.environ.get('LD_PRELOAD', '')}))
