#!/usr/bin/python3
"""The PyTorch side of bench/generate: the bench/train Llama (HF math, plain PyTorch 1.13) with a preallocated
KV cache, timing forward-only prefill and greedy decoding under torch.inference_mode(). Prints one JSON line.
Usage: torch_gen.py CONFIG --prefill B S --decode B P N [--decode ...] --runs R"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from torch_llama import Llama  # noqa: E402

torch.set_num_threads(int(os.environ.get('BENCH_THREADS', '2')))
argv = sys.argv[1:]
name = argv[0]
c = json.load(open(os.path.join(os.path.dirname(__file__), '..', 'train', 'configs.json')))[name]
D, L, H, V = c["dim"], c["layers"], c["heads"], c["vocab"]
hd = D // H
runs = int(argv[argv.index('--runs') + 1]) if '--runs' in argv else 3
prefills = [(int(argv[i + 1]), int(argv[i + 2])) for i, a in enumerate(argv) if a == '--prefill']
decodes = [(int(argv[i + 1]), int(argv[i + 2]), int(argv[i + 3])) for i, a in enumerate(argv) if a == '--decode']
MAX_POS = 4096


def generate(model, prompt, new_tokens):
    """Greedy decoding; returns the new tokens (B, new_tokens)."""
    B, P = prompt.shape
    cache = [(torch.zeros(B, H, P + new_tokens, hd), torch.zeros(B, H, P + new_tokens, hd)) for _ in range(L)]
    nxt = model(prompt, cache, 0, last_only=True).argmax(-1)
    out = [nxt]
    for t in range(1, new_tokens):
        nxt = model(nxt[:, None], cache, P + t - 1, last_only=True).argmax(-1)
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
model = Llama(c, MAX_POS).eval()
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
