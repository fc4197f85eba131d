// Engine-level training checks: a 2-layer MLP learns a toy function; steady-state steps leak nothing and
// allocate nothing new from the OS; two runs give identical bits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activeBackend } from '../../src/backend/select.ts';
import { ParameterSet } from '../../src/nn/parameters.ts';
import { linear } from '../../src/nn/linear.ts';
import * as T from '../../src/tensor/index.ts';
import { Rng, Tensor, backward, scope } from '../../src/tensor/index.ts';
import { AdamW, clipScale, globalGradNorm } from '../../src/train/adamw.ts';

const IN = 3;
const HIDDEN = 32;

function toyData(n: number, seed: number): { x: Float32Array; y: Float32Array } {
  const rng = new Rng(seed);
  const x = rng.fillUniform(new Float32Array(n * IN), -1, 1);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const [a, b, c] = [x[i * IN] as number, x[i * IN + 1] as number, x[i * IN + 2] as number];
    y[i] = Math.sin(2 * a) + b * c;
  }
  return { x, y };
}

function makeModel(seed: number): ParameterSet {
  return new ParameterSet(
    [
      { name: 'fc1.weight', shape: [HIDDEN, IN], init: { kind: 'normal', std: 0.5 } },
      { name: 'fc1.bias', shape: [HIDDEN], init: { kind: 'zeros' } },
      { name: 'fc2.weight', shape: [1, HIDDEN], init: { kind: 'normal', std: 0.2 } },
      { name: 'fc2.bias', shape: [1], init: { kind: 'zeros' } },
    ],
    new Rng(seed),
  );
}

/** One training step: forward, MSE loss, backward, clip, AdamW. Returns the loss. */
function step(params: ParameterSet, opt: AdamW, xs: Tensor, ys: Tensor, lr: number): number {
  params.zeroGrad();
  return scope(() => {
    const h = T.gelu(linear(xs, params, 'fc1', { bias: true }));
    const pred = linear(h, params, 'fc2', { bias: true });
    const loss = T.mean(T.square(T.sub(T.reshape(pred, [-1]), ys)), 0);
    backward(loss);
    opt.update(lr, clipScale(globalGradNorm(params.grads), 1.0));
    return loss.item();
  });
}

function train(steps: number, seed: number): { losses: number[]; final: Float32Array } {
  const { x, y } = toyData(64, 1);
  const params = makeModel(seed);
  const opt = new AdamW(params.values, params.grads, { lr: 1e-2, weightDecay: 0 });
  const xs = Tensor.from(x, [64, IN], 'float32', { persistent: true });
  const ys = Tensor.from(y, [64], 'float32', { persistent: true });
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) losses.push(step(params, opt, xs, ys, i < steps / 2 ? 1e-2 : 1e-3));
  const final = params.values.all.toArray() as Float32Array;
  params.release();
  opt.release();
  xs.release();
  ys.release();
  return { losses, final };
}

test('a 2-layer MLP learns sin(2a) + bc to near-zero loss', () => {
  const { losses } = train(1000, 3);
  const first = losses[0] as number;
  const last = losses[losses.length - 1] as number;
  assert.ok(first > 0.1, `initial loss ${first}`);
  assert.ok(last < 1e-3, `final loss ${last} (from ${first})`);
});

test('two runs with the same seed give identical bits', () => {
  const a = train(30, 5);
  const b = train(30, 5);
  assert.deepEqual(a.losses, b.losses);
  assert.deepEqual(Buffer.from(a.final.buffer), Buffer.from(b.final.buffer));
});

test('training steps leak no native memory and allocate nothing new in steady state', () => {
  const { x, y } = toyData(64, 1);
  const baseline = activeBackend().memStats().liveBytes;
  const params = makeModel(9);
  const opt = new AdamW(params.values, params.grads, { lr: 1e-2 });
  const xs = Tensor.from(x, [64, IN], 'float32', { persistent: true });
  const ys = Tensor.from(y, [64], 'float32', { persistent: true });
  const afterSetup = activeBackend().memStats().liveBytes;
  step(params, opt, xs, ys, 1e-2);
  const warm = activeBackend().memStats();
  for (let i = 0; i < 10; i++) step(params, opt, xs, ys, 1e-2);
  const after = activeBackend().memStats();
  assert.equal(after.liveBytes, afterSetup, 'live bytes return to their level before the steps');
  assert.equal(after.osAllocs, warm.osAllocs, 'steady-state steps reuse cached blocks');
  params.release();
  opt.release();
  xs.release();
  ys.release();
  assert.equal(activeBackend().memStats().liveBytes, baseline, 'releasing the model returns to the baseline');
});
