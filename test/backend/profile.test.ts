// The per-kernel profile: counts and times native calls while on, restores the plain binding when off, and
// estimates each kernel's bytes and FLOPs from its arguments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { type ProfileRow, formatProfile, profileRows, resetProfile, startProfile, stopProfile } from '../../src/backend/profile.ts';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import { lossSum } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, backward, scope } from '../../src/tensor/index.ts';

test('profile counts kernel calls and restores the binding', () => {
  const plainGemm = native.gemm;
  startProfile();
  resetProfile();
  assert.notEqual(native.gemm, plainGemm);
  scope(() => {
    const a = Tensor.full([8, 8], 1);
    T.matmul(a, a);
    T.matmul(a, a);
  });
  stopProfile();
  assert.equal(native.gemm, plainGemm);
  const rows = profileRows();
  const gemm = rows.find((r) => r.name === 'gemm');
  assert.equal(gemm?.calls, 2);
  assert.ok((gemm?.seconds ?? -1) >= 0);
  assert.match(formatProfile(rows, 2), /gemm\s+1\.0/);
  scope(() => T.matmul(Tensor.full([2, 2], 1), Tensor.full([2, 2], 1)));
  assert.equal(profileRows().find((r) => r.name === 'gemm')?.calls, 2, 'nothing is counted after stop');
});

test('profile estimates bytes and FLOPs per kernel from the arguments of a tiny Llama step', () => {
  // dim 32, 2 layers, 2 heads of 16, ffn 48, vocab 64; batch 2 × 8 tokens.
  const [D, L, H, F, V, B, S] = [32, 2, 2, 48, 64, 2, 8];
  const cfg = parseModelConfig(
    {
      model_type: 'llama', vocab_size: V, hidden_size: D, intermediate_size: F, num_hidden_layers: L,
      num_attention_heads: H, num_key_value_heads: H, max_position_embeddings: S, rms_norm_eps: 1e-5,
    },
    'tiny',
  ) as LlamaConfig;
  const model = new Llama(cfg, { seed: 0 });
  const ids = Int32Array.from({ length: B * S }, (_, i) => (i * 7) % V);
  startProfile();
  resetProfile();
  try {
    scope(() => {
      const hidden = model.forward(Tensor.from(ids, [B, S], 'int32'), { positions: positionIds(B, S) });
      const { lossSum: sum } = lossSum(model, hidden, Tensor.from(ids, [B, S], 'int32'));
      backward(sum);
    });
  } finally {
    stopProfile();
    model.release();
  }
  const row = (name: string): ProfileRow => {
    const r = profileRows().find((x) => x.name === name);
    assert.ok(r, `no profile row for ${name}`);
    return r;
  };
  const N = B * S;
  // RMSNorm forward, 2 per layer + the final one: x read, y written (N × D), weight (D) and rstd (N).
  assert.equal(row('rmsnormForward').calls, 2 * L + 1);
  assert.equal(row('rmsnormForward').bytes, (2 * L + 1) * 4 * (2 * N * D + D + N));
  // SwiGLU forward, one per layer: gate and up read, out written, N × F each.
  assert.equal(row('swigluForward').bytes, L * 3 * 4 * N * F);
  assert.equal(row('swigluBackward').bytes, L * 5 * 4 * N * F);
  // Causal attention: 36 visible (query, key) pairs per row of 8, 4·hd FLOPs each forward, 10·hd backward.
  const pairs = (S * (S + 1)) / 2;
  assert.equal(row('attentionForward').flops, L * 4 * (D / H) * B * H * pairs);
  assert.equal(row('attentionBackward').flops, L * 10 * (D / H) * B * H * pairs);
  // Cross-entropy: one (N, V, D) product forward, three backward; h, w, labels, lse, and the logits chunks.
  assert.equal(row('crossEntropyForward').flops, 2 * N * V * D);
  assert.equal(row('crossEntropyForward').bytes, 4 * (N * D + V * D + 2 * N + 2 * N * V));
  assert.equal(row('crossEntropyBackward').flops, 6 * N * V * D);
  // Every GEMM of the step is 2·M·N·K: forward projections, and two products per projection backward.
  const perLayer = 2 * N * D * D * 4 + 2 * N * D * F * 3;
  assert.equal(row('gemm').flops, 3 * L * perLayer);
  const table = formatProfile(profileRows(), 1);
  assert.match(table, /MB\/step\s+GB\/s\s+GFLOP\/s/);
  assert.match(table, /^total backend.*\d+\.\d\s+\d+\.\d\s+\d+\.\d$/m);
});
