#!/usr/bin/python3
"""Writes the bf16 mixed-precision reference for sftkit (test/fixtures/models/llama_bf16.{json,bin}).

The tiny GQA Llama of model_parity.py, one forward/backward, twice:
- `emulated`: sftkit's bf16 semantics exactly. Every linear (q/k/v/o, MLP, lm_head) rounds its operands to
  bf16 (round to nearest even, as torch's .bfloat16() does) and accumulates in float64 here; its output stays
  fp32. The backward products round their operands too (dX = r(dY) r(W), dW = r(dY)^T r(X)). Everything
  else (norms, RoPE, attention, softmax, SiLU, loss) is fp32. sftkit must match this to fp32 summation error.
- `autocast`: PyTorch's own torch.autocast('cpu', dtype=torch.bfloat16). It differs from sftkit on purpose:
  linear and matmul outputs are rounded to bf16 and flow on in bf16 (SiLU, residual adds of bf16 tensors),
  and the attention products q.kT and p.v run in bf16 too, whereas sftkit keeps every output fp32 and its
  fused attention in fp32. So sftkit is only expected near it (a bf16-sized tolerance), not equal.
Run: /usr/bin/python3 scripts/reference/bf16_parity.py
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import model_parity  # noqa: E402  (the model code; importing it writes nothing)

OUT = model_parity.OUT
torch.manual_seed(1)
torch.set_num_threads(1)


def r(t):
    """Rounded to bf16 (nearest even), back in fp32."""
    return t.bfloat16().float()


class Bf16Linear(torch.autograd.Function):
    """y = r(x) r(w)^T with an exact (float64) accumulation; backward rounds dy, w and x the same way."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return (r(x).double() @ r(w).double().T).float()

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = (r(dy).double() @ r(w).double()).float()
        dw = (r(dy).reshape(-1, dy.shape[-1]).double().T @ r(x).reshape(-1, x.shape[-1]).double()).float()
        return dx, dw


def bf16_linear(x, w, b=None):
    y = Bf16Linear.apply(x, w)
    return y if b is None else y + b


cfg = {
    'model_type': 'llama', 'vocab_size': 61, 'hidden_size': 32, 'intermediate_size': 40, 'num_hidden_layers': 2,
    'num_attention_heads': 4, 'num_key_value_heads': 2, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0,
    'max_position_embeddings': 64, 'tie_word_embeddings': False,
}
params = model_parity.llama_params(cfg)
V, B, S = cfg['vocab_size'], 2, 12
rows = torch.randint(0, V, (B, S + 1), dtype=torch.int64)
labels = rows.clone()
labels[0, :3] = -100
ids, targets = rows[:, :-1], labels[:, 1:]


def run(mode):
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    if mode == 'emulated':
        plain = F.linear
        F.linear = bf16_linear  # model_parity's forward calls F.linear for every projection and the lm_head
        try:
            logits = model_parity.llama_forward(cfg, p, ids)
        finally:
            F.linear = plain
    elif mode == 'autocast':
        with torch.autocast('cpu', dtype=torch.bfloat16):
            logits = model_parity.llama_forward(cfg, p, ids)
    else:
        logits = model_parity.llama_forward(cfg, p, ids)
    loss = F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    return loss.item(), {k: v.grad.detach().float().clone() for k, v in p.items()}


tensors, blob = [], bytearray()


def add(name, t):
    t = t.detach().contiguous().float()
    tensors.append({'name': name, 'shape': list(t.shape), 'offset': len(blob) // 4})
    blob.extend(struct.pack(f'<{t.numel()}f', *t.flatten().tolist()))


for k, v in params.items():
    add('param:' + k, v)
losses = {}
for mode in ('float32', 'emulated', 'autocast'):
    loss, grads = run(mode)
    losses[mode] = loss
    for k, g in grads.items():
        add(f'{mode}:{k}', g)
meta = {'config': cfg, 'ids': ids.tolist(), 'labels': targets.tolist(), 'loss': losses, 'tensors': tensors, 'torch': torch.__version__}
with open(os.path.join(OUT, 'llama_bf16.json'), 'w') as f:
    json.dump(meta, f)
with open(os.path.join(OUT, 'llama_bf16.bin'), 'wb') as f:
    f.write(blob)
print('llama_bf16 losses', losses, 'floats', len(blob) // 4)
