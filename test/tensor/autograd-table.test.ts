// Backward by table: a recorded node is data ({op, inputs, ctx}, no closure), and backward's gradient for it
// is what the op table's rule computes from that ctx.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { BACKWARD_RULES, OP_NAMES, Tensor, backward, scope } from '../../src/tensor/index.ts';

test('every op has a rule in the table, and nothing else does', () => {
  assert.deepEqual(Object.keys(BACKWARD_RULES).sort(), [...OP_NAMES].sort());
  for (const op of OP_NAMES) assert.equal(typeof BACKWARD_RULES[op], 'function', op);
});

test('a node records {op, inputs, ctx} and backward runs the table rule on its ctx', () => {
  scope(() => {
    const a = Tensor.from([1, 2, 3], [3]).requireGrad();
    const b = Tensor.from([4, -5, 6], [3]).requireGrad();
    const y = T.mul(a, b);
    const node = y.gradFn;
    assert.ok(node);
    assert.deepEqual(Object.keys(node).sort(), ['ctx', 'inputs', 'op']);
    assert.equal(node.op, 'mul');
    assert.deepEqual(node.inputs, [a, b]);
    assert.equal(typeof node.ctx, 'object');
    // The rule alone, from the recorded ctx: d(a*b)/da = g*b, d(a*b)/db = g*a.
    const g = Tensor.from([1, 10, 100], [3]);
    const [da, db] = T.noGrad(() => BACKWARD_RULES.mul(node.ctx, g, backward)) as Tensor[];
    assert.deepEqual(Array.from((da as Tensor).toArray()), [4, -50, 600]);
    assert.deepEqual(Array.from((db as Tensor).toArray()), [1, 20, 300]);
    // And the pass gives the same.
    backward(y, g);
    assert.deepEqual(Array.from((a.grad as Tensor).toArray()), [4, -50, 600]);
    assert.deepEqual(Array.from((b.grad as Tensor).toArray()), [1, 20, 300]);
    a.grad?.release();
    b.grad?.release();
  });
});

test('the table is the dispatch: a rule swapped in the table is the one backward runs', () => {
  const rules = BACKWARD_RULES as unknown as Record<string, unknown>;
  const original = rules.neg;
  let calls = 0;
  rules.neg = (ctx: unknown, g: Tensor, run: unknown): unknown => {
    calls++;
    return (original as (c: unknown, g: Tensor, r: unknown) => unknown)(ctx, g, run);
  };
  try {
    scope(() => {
      const x = Tensor.from([1, 2], [2]).requireGrad();
      backward(T.sumAll(T.neg(x)));
      assert.deepEqual(Array.from((x.grad as Tensor).toArray()), [-1, -1]);
      x.grad?.release();
    });
  } finally {
    rules.neg = original;
  }
  assert.equal(calls, 1);
});
