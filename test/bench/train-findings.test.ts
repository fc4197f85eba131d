// bench/train's verdicts: utilisation against the GEMM peak of the dtype that ran, bf16 judged only where
// vdpbf16ps ran, speed and RSS against PyTorch of the same dtype.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type StepResult, bf16Judged, flopsPerToken, modelGflops, peakFor, trainFindings } from '../../bench/train/findings.ts';

const M = { dim: 512, layers: 8, seq: 512 };
// 50M parameters: 6·50e6 + 12·8·512·512 = 325,165,056 FLOPs a token.
const PARAMS = 50_000_000;
const FLOPS = 6 * PARAMS + 12 * 8 * 512 * 512;

function run(over: Partial<StepResult>): StepResult {
  return { engine: 'sftkit', config: 'M', params: PARAMS, median_s: 1, tokens_per_s: 1000, fwd_tokens_per_s: 3000, peak_rss_mb: 1000, ...over };
}

test('model FLOPs a token and model GFLOP/s', () => {
  assert.equal(flopsPerToken(PARAMS, M), FLOPS);
  assert.equal(modelGflops(run({ tokens_per_s: 1000 }), M), FLOPS * 1000 / 1e9);
});

test('peakFor picks the peak of the dtype, and none when it was not measured', () => {
  const r = run({ gemm_peak_gflops: 200, bf16_gemm_peak_gflops: 400 });
  assert.equal(peakFor(r, 'float32'), 200);
  assert.equal(peakFor(r, 'bfloat16'), 400);
  assert.equal(peakFor(run({}), 'float32'), null);
  assert.equal(peakFor(run({ gemm_peak_gflops: 0 }), 'float32'), null);
});

test('fp32 findings: speed and RSS vs PyTorch, utilisation judged at M and L against 90%', () => {
  // 325 model GFLOP/s at 1000 tok/s: 90% of a 361 GFLOP/s peak is met, of 362 not.
  const torch = run({ engine: 'pytorch 1.13', tokens_per_s: 1000, peak_rss_mb: 1200 });
  const met = trainFindings({ name: 'M', dims: M, ours: run({ gemm_peak_gflops: 361 }), torch });
  assert.deepEqual(met.map((f) => [f.figure, f.target, f.measured, f.met]), [
    ['training tok/s fp32, M, vs tuned PyTorch', '≥ 1.00×', '1.00×', true],
    ['fp32 model FLOP utilisation, M, of the fp32 GEMM peak (361 GFLOP/s in the same process)', '≥ 90%', '90%', true],
    ['training peak RSS fp32, M, vs PyTorch', '≤ 1.00×', '0.83×', true],
  ]);
  const missed = trainFindings({ name: 'M', dims: M, ours: run({ gemm_peak_gflops: 362, tokens_per_s: 990, peak_rss_mb: 1300 }), torch });
  assert.deepEqual(missed.map((f) => f.met), [false, false, false]);
  // S: utilisation recorded, not judged.
  const s = trainFindings({ name: 'S', dims: M, ours: run({ gemm_peak_gflops: 1000 }), torch });
  assert.deepEqual(s.map((f) => [f.target, f.met]), [['≥ 1.00×', true], ['(recorded)', null], ['≤ 1.00×', true]]);
  // No peak measured (an older sftkit-step): no utilisation finding.
  assert.equal(trainFindings({ name: 'L', dims: M, ours: run({}), torch }).length, 2);
});

test('bf16 findings: judged against 85% of the bf16 peak only where vdpbf16ps ran', () => {
  const fp32 = run({ tokens_per_s: 800 });
  const torch = run({ engine: 'pytorch 1.13 bf16 autocast', tokens_per_s: 900, peak_rss_mb: 1100 });
  // 325 model GFLOP/s over a 380 peak: 86%.
  const native = run({ engine: 'sftkit bf16', bf16_gemm_peak_gflops: 380, bf16_path: 'native', has_avx512_bf16: true });
  const f = trainFindings({ name: 'L', dims: M, ours: fp32, torch, bf16: { ours: native, torch } });
  assert.deepEqual(f.map((x) => [x.figure, x.target, x.measured, x.met]), [
    ['training tok/s bf16, L, vs PyTorch bf16 autocast', '≥ 1.00×', '1.11×', true],
    ['bf16 model FLOP utilisation, L, of the bf16 GEMM peak (380 GFLOP/s in the same process; vdpbf16ps (AVX512_BF16))', '≥ 85% (AVX512_BF16 CPUs)', '86%', true],
    ['training peak RSS bf16, L, vs PyTorch bf16 autocast', '≤ 1.00×', '0.91×', true],
    ['training tok/s, L, sftkit bf16 over sftkit fp32', '(recorded)', '1.25×', null],
  ]);
  // Without AVX512_BF16 the same utilisation is recorded with the reason, never judged, even when low.
  const fallback = run({ engine: 'sftkit bf16', bf16_gemm_peak_gflops: 1000, bf16_path: 'fallback', has_avx512_bf16: false });
  const u = trainFindings({ name: 'M', dims: M, ours: fp32, torch, bf16: { ours: fallback, torch } })[1];
  assert.ok(u);
  assert.equal(u.met, null);
  assert.equal(u.measured, '33%');
  assert.match(u.figure, /not judged: this CPU has no AVX512_BF16, bf16 GEMMs run the fp32 fallback/);
  // On an AVX512_BF16 CPU with vdpbf16ps turned off, likewise.
  assert.deepEqual(bf16Judged(run({ bf16_path: 'fallback', has_avx512_bf16: true })), { judged: true, why: 'the fp32 kernel on rounded operands, faster than vdpbf16ps on this CPU' });
  assert.deepEqual(bf16Judged(run({ bf16_path: 'emulated', has_avx512_bf16: false })).judged, false);
  assert.equal(bf16Judged(native).judged, true);
  // In bf16 mode the fp32 rows are context: no fp32 findings.
  assert.ok(f.every((x) => !x.figure.includes('fp32 model')));
});
