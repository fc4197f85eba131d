// T.crossEntropy with gradScale (loss and gradients in one sweep): the gradients it hands to autograd, into a
// fresh .grad or straight into an existing one, equal the two-pass op's (fp32 and bf16 autocast, tied
// weights, frozen inputs); without a gradient it is the forward-only op; the gradScale contract throws;
// one kernel call (three products) per step; the row-block choice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeRel } from '../helpers/native.ts';
import { profileRows, resetProfile, startProfile, stopProfile } from '../../src/backend/profile.ts';
import { ShapeError } from '../../src/errors.ts';
import { sweepRowBlock } from '../../src/tensor/ops/fused.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, backward, noGrad, scope } from '../../src/tensor/index.ts';

const N = 37, d = 24, V = 301;

interface Leaves { hx: Tensor; w: Tensor; labels: Int32Array; ids: Int32Array }

function leaves(seed: number, gradsFirst: boolean): Leaves {
  const rng = new Rng(seed);
  const hx = Tensor.from(rng.fillUniform(new Float32Array(N * d), -1, 1), [N, d], 'float32', { persistent: true }).requireGrad();
  const w = Tensor.from(rng.fillUniform(new Float32Array(V * d), -0.5, 0.5), [V, d], 'float32', { persistent: true }).requireGrad();
  if (gradsFirst) {
    // An existing .grad (a second micro-batch): the sweep adds dw straight into it.
    hx.grad = Tensor.from(rng.fillUniform(new Float32Array(N * d), -1, 1), [N, d], 'float32', { persistent: true });
    w.grad = Tensor.from(rng.fillUniform(new Float32Array(V * d), -1, 1), [V, d], 'float32', { persistent: true });
  }
  const labels = Int32Array.from({ length: N }, (_, r) => (r % 4 === 1 ? -100 : rng.int(V)));
  const ids = Int32Array.from({ length: N }, () => rng.int(V));
  return { hx, w, labels, ids };
}

interface Run { loss: number; gh: Float32Array | null; gw: Float32Array | null }

/** One forward + backward of mean token loss; tied: h is the embedding of ids by w (plus hx). */
function run(sweep: boolean, o: { gradsFirst?: boolean; bf16?: boolean; tied?: boolean; rowBlock?: number; freeze?: 'h' | 'w' } = {}): Run {
  const { hx, w, labels, ids } = leaves(7, o.gradsFirst ?? false);
  if (o.freeze === 'h') hx.requiresGrad = false;
  if (o.freeze === 'w') w.requiresGrad = false;
  try {
    const loss = scope(() =>
      T.autocast(o.bf16 ? 'bfloat16' : 'float32', () => {
        const y = Tensor.from(labels, [N], 'int32');
        const base = T.scale(hx, 1.5);
        const h = o.tied ? T.add(base, T.embedding(w, Tensor.from(ids, [N], 'int32'))) : base;
        const trained = labels.filter((l) => l !== -100).length;
        const opts = sweep ? { gradScale: 1 / trained, ...(o.rowBlock ? { rowBlock: o.rowBlock } : {}) } : {};
        const { lossSum, count } = T.crossEntropy(h, w, y, opts);
        assert.equal(count, trained);
        const value = lossSum.item();
        backward(T.scale(lossSum, 1 / trained), undefined, { releaseActivations: true });
        return value;
      }),
    );
    return { loss, gh: hx.grad ? (hx.grad.toArray() as Float32Array) : null, gw: w.grad ? (w.grad.toArray() as Float32Array) : null };
  } finally {
    for (const t of [hx, w]) {
      t.grad?.release();
      t.release();
    }
  }
}

function same(tag: string, got: Run, want: Run): void {
  closeRel(`${tag} loss`, [got.loss], [want.loss], 1e-6);
  assert.equal(got.gh === null, want.gh === null, `${tag}: h gradient presence`);
  assert.equal(got.gw === null, want.gw === null, `${tag}: w gradient presence`);
  if (got.gh && want.gh) closeRel(`${tag} dh`, got.gh, want.gh, 1e-5);
  if (got.gw && want.gw) closeRel(`${tag} dw`, got.gw, want.gw, 1e-5);
}

test('one-sweep crossEntropy gradients equal the two-pass op (fresh or existing .grad, bf16, tied weights, row blocks)', () => {
  for (const bf16 of [false, true]) {
    for (const gradsFirst of [false, true]) {
      for (const tied of [false, true]) {
        const want = run(false, { gradsFirst, bf16, tied });
        for (const rowBlock of [undefined, 5, 64]) {
          same(`bf16=${bf16} gradsFirst=${gradsFirst} tied=${tied} rowBlock=${rowBlock}`, run(true, { gradsFirst, bf16, tied, rowBlock }), want);
        }
      }
    }
  }
});

test('one-sweep crossEntropy with a frozen input makes only the other gradient', () => {
  for (const freeze of ['h', 'w'] as const) {
    for (const gradsFirst of [false, true]) {
      const got = run(true, { freeze, gradsFirst, rowBlock: 8 });
      same(`freeze ${freeze} gradsFirst=${gradsFirst}`, got, run(false, { freeze, gradsFirst }));
      if (!gradsFirst) assert.equal(freeze === 'h' ? got.gh : got.gw, null, `frozen ${freeze} gets no gradient`);
    }
  }
});

test('crossEntropy with gradScale but no gradient wanted is the forward-only op and touches no .grad', () => {
  const { hx, w, labels } = leaves(3, true);
  try {
    const before = (w.grad as Tensor).toArray().slice();
    scope(() => {
      const y = Tensor.from(labels, [N], 'int32');
      const plain = T.crossEntropy(hx, w, y);
      const noGradSweep = noGrad(() => T.crossEntropy(hx, w, y, { gradScale: 0.5 }));
      assert.equal(noGradSweep.lossSum.item(), plain.lossSum.item());
      assert.equal(noGradSweep.lossSum.requiresGrad, false);
      hx.requiresGrad = false;
      w.requiresGrad = false;
      const frozen = T.crossEntropy(hx, w, y, { gradScale: 0.5 });
      assert.equal(frozen.lossSum.item(), plain.lossSum.item());
    });
    assert.deepEqual((w.grad as Tensor).toArray(), before);
  } finally {
    for (const t of [hx, w]) {
      t.grad?.release();
      t.release();
    }
  }
});

test('one-sweep crossEntropy: backward with another gradient, a second backward, or a bad gradScale throws', () => {
  const { hx, w, labels } = leaves(5, false);
  try {
    scope(() => {
      const y = Tensor.from(labels, [N], 'int32');
      const h = T.scale(hx, 1);
      assert.throws(() => T.crossEntropy(h, w, y, { gradScale: Number.NaN }), (e: unknown) => e instanceof ShapeError && /crossEntropy: gradScale must be finite, got NaN/.test(e.message));
      assert.throws(() => T.crossEntropy(h, w, y, { gradScale: 1, rowBlock: 0 }), /crossEntropy: rowBlock must be an integer >= 1, got 0/);
      const bad = T.crossEntropy(h, w, y, { gradScale: 0.25 });
      assert.throws(
        () => backward(T.scale(bad.lossSum, 0.5)),
        (e: unknown) => e instanceof ShapeError && /crossEntropy: the loss was made with gradScale 0.25 .* but backward brings gradient 0.5/.test(e.message),
      );
      const ok = T.crossEntropy(h, w, y, { gradScale: 1 / 3 });
      backward(T.scale(ok.lossSum, 1 / 3));
      assert.throws(() => backward(T.scale(ok.lossSum, 1 / 3)), /crossEntropy: backward ran twice through a one-sweep loss/);
    });
  } finally {
    for (const t of [hx, w]) {
      t.grad?.release();
      t.release();
    }
  }
});

test('one-sweep crossEntropy is one kernel call of three (N, V, d) products, and no forward/backward pair', () => {
  const { hx, w, labels } = leaves(9, false);
  startProfile();
  resetProfile();
  try {
    scope(() => {
      const { lossSum } = T.crossEntropy(T.scale(hx, 1), w, Tensor.from(labels, [N], 'int32'), { gradScale: 1 });
      backward(lossSum);
    });
  } finally {
    stopProfile();
    for (const t of [hx, w]) {
      t.grad?.release();
      t.release();
    }
  }
  const rows = profileRows();
  const sweep = rows.find((r) => r.name === 'crossEntropySweep');
  assert.equal(sweep?.calls, 1);
  assert.equal(sweep?.flops, 6 * N * V * d);
  assert.ok(!rows.some((r) => r.name === 'crossEntropyForward' || r.name === 'crossEntropyBackward'));
});

test('sweepRowBlock: 32 MiB of logits at most (64 rows at least), evened out over the blocks, whole 16-row tiles', () => {
  assert.equal(sweepRowBlock(1024, 32000), 256); // config L: 4 blocks
  assert.equal(sweepRowBlock(2048, 8192), 1024); // config M: 2 blocks
  assert.equal(sweepRowBlock(1000, 32000), 256);
  assert.equal(sweepRowBlock(37, 301), 37);
  assert.equal(sweepRowBlock(100000, 150000), 64);
  assert.equal(sweepRowBlock(0, 5), 1);
});
