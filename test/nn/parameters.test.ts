// Weights by kind and the linear by name: freezing moves a weight out of the trainable flat buffer (no
// gradient, no slot in the buffers the optimizer walks), values kept; linear reads nn.Linear's (out, in)
// and Conv1D's (in, out) layouts by the module's name, checked against a float64 product.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CONV1D, linear } from '../../src/nn/linear.ts';
import { ParameterSet } from '../../src/nn/parameters.ts';
import { Rng, Tensor, scope } from '../../src/tensor/index.ts';

const SPECS = [
  { name: 'a.weight', shape: [5, 3], init: { kind: 'normal' as const, std: 1 } },
  { name: 'a.bias', shape: [5], init: { kind: 'normal' as const, std: 1 } },
  { name: 'c.weight', shape: [3, 4], init: { kind: 'normal' as const, std: 1 } },
  { name: 'c.bias', shape: [4], init: { kind: 'normal' as const, std: 1 } },
  { name: 'norm.weight', shape: [3], init: { kind: 'ones' as const } },
];

test('freeze moves weights to the frozen store with their values; the trainable buffers shrink', () => {
  const all = new ParameterSet(SPECS, new Rng(1));
  const frozenAtBuild = new ParameterSet(SPECS, new Rng(1), { frozen: (n) => n.startsWith('a.') });
  try {
    const before = new Map(all.names.map((n) => [n, all.read(n)]));
    assert.equal(all.values.layout.size, 16 * 5);
    all.freeze((n) => n.startsWith('a.'));
    assert.deepEqual(all.trainableNames, ['c.weight', 'c.bias', 'norm.weight']);
    assert.deepEqual(all.names, SPECS.map((s) => s.name));
    assert.equal(all.values.layout.size, 16 * 3);
    assert.equal(all.grads.layout.size, 16 * 3);
    for (const n of all.names) assert.deepEqual(all.read(n), before.get(n), n);
    assert.equal(all.get('a.weight').requiresGrad, false);
    assert.equal(all.get('a.weight').grad, null);
    assert.equal(all.get('c.weight').grad?.storage, all.grads.storage);
    // Frozen at build: the same values (the RNG runs over every weight in model order).
    for (const n of all.names) assert.deepEqual(frozenAtBuild.read(n), before.get(n), n);
    assert.deepEqual(all.counts(), { trainableParams: 12 + 4 + 3, frozenParams: 15 + 5, frozenBytes: 80, frozenMappedBytes: 0 });
  } finally {
    all.release();
    frozenAtBuild.release();
  }
});

test('linear by name: nn.Linear (out, in) and Conv1D (in, out) layouts, trainable or frozen', () => {
  for (const frozen of [false, true]) {
    const p = new ParameterSet(SPECS, new Rng(2), { frozen: () => frozen });
    try {
      const rng = new Rng(3);
      const x = new Float32Array(2 * 3);
      rng.fillNormal(x, 0, 1);
      const [ya, yc] = scope(() => {
        const xt = Tensor.from(x, [2, 3]);
        return [linear(xt, p, 'a', { bias: true }).toArray() as Float32Array, linear(xt, p, 'c', CONV1D).toArray() as Float32Array];
      });
      const wa = p.read('a.weight');
      const ba = p.read('a.bias');
      const wc = p.read('c.weight');
      const bc = p.read('c.bias');
      for (let r = 0; r < 2; r++) {
        for (let o = 0; o < 5; o++) {
          let s = ba[o] as number;
          for (let i = 0; i < 3; i++) s += (x[r * 3 + i] as number) * (wa[o * 3 + i] as number);
          assert.ok(Math.abs((ya[r * 5 + o] as number) - s) < 1e-5, `linear (out, in) [${r}, ${o}]`);
        }
        for (let o = 0; o < 4; o++) {
          let s = bc[o] as number;
          for (let i = 0; i < 3; i++) s += (x[r * 3 + i] as number) * (wc[i * 4 + o] as number);
          assert.ok(Math.abs((yc[r * 4 + o] as number) - s) < 1e-5, `Conv1D (in, out) [${r}, ${o}]`);
        }
      }
    } finally {
      p.release();
    }
  }
});

test('gradients: false makes no gradient buffer; dropGradients and restoreGradients switch it off and on', () => {
  const specs = [
    { name: 'a', shape: [3, 5], init: { kind: 'normal' as const, std: 1 } },
    { name: 'b', shape: [7], init: { kind: 'ones' as const } },
  ];
  const p = new ParameterSet(specs, new Rng(1), { gradients: false });
  try {
    assert.equal(p.hasGradients, false);
    assert.equal(p.grads.layout.size, 0);
    assert.equal(p.get('a').grad, null);
    p.restoreGradients();
    assert.equal(p.hasGradients, true);
    assert.deepEqual(Array.from(p.get('b').grad!.toArray()), new Array(7).fill(0));
    p.dropGradients();
    assert.equal(p.get('b').grad, null);
    // freeze rebuilds the trainable buffers and keeps the state: still no gradients
    p.freeze((n) => n === 'a');
    assert.equal(p.hasGradients, false);
    assert.equal(p.get('b').grad, null);
    p.restoreGradients();
    assert.deepEqual(Array.from(p.get('b').grad!.toArray()), new Array(7).fill(0), 'a fresh zeroed buffer');
  } finally {
    p.release();
  }
});
