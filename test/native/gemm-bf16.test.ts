// Tests the bf16 mixed-precision GEMM (GemmArgs::bf16): the operand rounding against exact bits, and every
// path this machine has (naive, AVX2, AVX-512 fallback, the vdpbf16ps layout emulated, vdpbf16ps itself where
// the CPU has AVX512_BF16) against a float64 reference computed on bf16-rounded inputs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BF16_PATH, ISA, host } from '../../src/backend/host.ts';
import { nativeBackend as native } from '../../src/backend/native.ts';
import { isaPaths, randomF32, readF32, relError, roundBf16, toNative, withIsa } from '../helpers/native.ts';

function fromBits(b: number): number {
  return new Float32Array(new Uint32Array([b]).buffer)[0] as number;
}

function toBits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0] as number;
}

/** A bf16 GEMM path to test: an ISA level, with the bf16 path to select on AVX-512. */
interface Path { name: string; isa: number; bf16Path: number }

function paths(): { run: Path[]; skipped: string | null } {
  const run: Path[] = [];
  for (const { name, level } of isaPaths()) {
    if (level < ISA.avx512) run.push({ name, isa: level, bf16Path: BF16_PATH.fallback });
    else {
      run.push({ name: `${name} fallback`, isa: level, bf16Path: BF16_PATH.fallback });
      run.push({ name: `${name} vdpbf16ps-emulated`, isa: level, bf16Path: BF16_PATH.emulated });
      if (host.hasAvx512Bf16()) run.push({ name: `${name} vdpbf16ps`, isa: level, bf16Path: BF16_PATH.native });
      run.push({ name: `${name} amx-emulated`, isa: level, bf16Path: BF16_PATH.amxEmulated });
      if (host.hasAmxBf16()) run.push({ name: `${name} amx`, isa: level, bf16Path: BF16_PATH.amx });
    }
  }
  const skipped = host.hasAvx512Bf16()
    ? null
    : host.detectedIsa() < ISA.avx512
      ? 'vdpbf16ps path not run: this CPU has no AVX-512'
      : 'vdpbf16ps path not run: this CPU has no AVX512_BF16 (CPUID 7.1 EAX bit 5); its packing ran with the instruction emulated';
  return { run, skipped };
}

function withPath<T>(p: Path, fn: () => T): T {
  const before = host.getBf16Path();
  try {
    assert.equal(host.setBf16Path(p.bf16Path), p.bf16Path, `${p.name}: path not available`);
    return withIsa(p.isa, fn);
  } finally {
    host.setBf16Path(before);
  }
}

interface Case { transA: boolean; transB: boolean; M: number; N: number; K: number; alpha: number; beta: number; batch?: number }

function gemmBf16(c: Case, a: Float32Array, b: Float32Array, c0: Float32Array): Float32Array {
  const batch = c.batch ?? 1;
  const lda = c.transA ? c.M : c.K, ldb = c.transB ? c.K : c.N;
  const ha = toNative(a), hb = toNative(b), hc = toNative(c0);
  try {
    native.gemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, ha, 0, lda, hb, 0, ldb, c.beta, hc, 0, c.N,
      batch, c.M * c.K, c.K * c.N, c.M * c.N, true);
    return readF32(hc, c0.length);
  } finally {
    native.free(ha);
    native.free(hb);
    native.free(hc);
  }
}

/** float64 reference of alpha * op(A) op(B) + beta * C on the given (already rounded or not) operands. */
function reference(c: Case, a: ArrayLike<number>, b: ArrayLike<number>, c0: Float32Array): Float64Array {
  const batch = c.batch ?? 1;
  const out = new Float64Array(batch * c.M * c.N);
  for (let q = 0; q < batch; q++) {
    const oa = q * c.M * c.K, ob = q * c.K * c.N, oc = q * c.M * c.N;
    for (let i = 0; i < c.M; i++) {
      for (let j = 0; j < c.N; j++) {
        let acc = 0;
        for (let k = 0; k < c.K; k++) {
          const av = a[oa + (c.transA ? k * c.M + i : i * c.K + k)] as number;
          const bv = b[ob + (c.transB ? j * c.K + k : k * c.N + j)] as number;
          acc += av * bv;
        }
        const idx = oc + i * c.N + j;
        out[idx] = c.beta === 0 ? c.alpha * acc : c.alpha * acc + c.beta * (c0[idx] as number);
      }
    }
  }
  return out;
}

const TRANSPOSES: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
// Odd sizes in every role; K = 257 leaves an odd k at the end of a pair panel.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [7, 1, 63], [1, 7, 257], [7, 7, 7], [63, 65, 1], [65, 63, 257], [257, 7, 65], [7, 257, 63], [257, 65, 257],
];

function check(c: Case, seed: number, ps: Path[]): void {
  const batch = c.batch ?? 1;
  const a = randomF32(batch * c.M * c.K, seed), b = randomF32(batch * c.K * c.N, seed + 1);
  const c0 = c.beta === 0 ? new Float32Array(batch * c.M * c.N).fill(Number.NaN) : randomF32(batch * c.M * c.N, seed + 2);
  const ref = reference(c, Float64Array.from(a, roundBf16), Float64Array.from(b, roundBf16), c0);
  const unrounded = reference(c, a, b, c0);
  for (const p of ps) {
    const got = withPath(p, () => gemmBf16(c, a, b, c0));
    const what = `${p.name} ${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'} M=${c.M} N=${c.N} K=${c.K} alpha=${c.alpha} beta=${c.beta}`;
    // fp32 accumulation of exact products: errors of fp32 summation only
    const err = relError(got, ref);
    assert.ok(err <= 2e-6, `${what}: rel error vs float64 on bf16-rounded inputs ${err}`);
    // and the rounding really happened (bf16 has 8 significant bits: ~1e-3 from the unrounded product)
    if (c.K >= 7 && c.alpha !== 0) assert.ok(relError(got, unrounded) > 1e-4, `${what}: looks unrounded`);
  }
}

test('bf16 gemm matches float64 on bf16-rounded inputs: odd sizes, all transposes, every path', (t) => {
  const { run, skipped } = paths();
  let seed = 1;
  for (const [transA, transB] of TRANSPOSES) {
    for (const [M, N, K] of SHAPES) check({ transA, transB, M, N, K, alpha: 1, beta: 0 }, seed++, run);
  }
  if (skipped) t.diagnostic(skipped);
  if (!host.hasAmxBf16()) t.diagnostic('AMX path not run: this CPU (or OS) gives no AMX-BF16 tiles; its packing ran with the tile product emulated');
});

test('bf16 gemm alpha/beta, batches, and K past a pair-panel block (1100 > 1024)', () => {
  const { run } = paths();
  let seed = 100;
  for (const [transA, transB] of TRANSPOSES) {
    check({ transA, transB, M: 65, N: 63, K: 257, alpha: 1.5, beta: -0.75 }, seed++, run);
    check({ transA, transB, M: 7, N: 65, K: 63, alpha: 0.5, beta: 1, batch: 3 }, seed++, run);
    check({ transA, transB, M: 33, N: 40, K: 1100, alpha: 1, beta: 0 }, seed++, run);
  }
});

test('the default bf16 path: AMX where the CPU has it, vdpbf16ps on AMD CPUs with AVX512_BF16, the fallback elsewhere; SFTKIT_BF16_GEMM chooses', () => {
  const code = "import('./src/backend/host.ts').then(({host}) => console.log(host.getBf16Path()))";
  const pathWith = (env: Record<string, string>): number => {
    const clean = { ...process.env };
    delete clean['SFTKIT_BF16_GEMM'];
    delete clean['SFTKIT_NO_AVX512BF16'];
    const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { env: { ...clean, ...env }, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return Number(run.stdout.trim());
  };
  const has = host.hasAvx512Bf16(), amx = host.hasAmxBf16();
  // AMX first; vdpbf16ps only on AMD, where it beats the fp32 kernel (on Intel it measured slower: runtime.cc)
  assert.equal(pathWith({}), amx ? BF16_PATH.amx : has && cpuVendor() === 'AuthenticAMD' ? BF16_PATH.native : BF16_PATH.fallback);
  assert.equal(pathWith({ SFTKIT_BF16_GEMM: 'vdpbf16ps' }), has ? BF16_PATH.native : BF16_PATH.fallback);
  assert.equal(pathWith({ SFTKIT_BF16_GEMM: 'amx' }), amx ? BF16_PATH.amx : BF16_PATH.fallback);
  assert.equal(pathWith({ SFTKIT_BF16_GEMM: 'fallback' }), BF16_PATH.fallback);
  assert.equal(pathWith({ SFTKIT_BF16_GEMM: 'vdpbf16ps', SFTKIT_NO_AVX512BF16: '1' }), has ? BF16_PATH.native : BF16_PATH.fallback);
  assert.equal(pathWith({ SFTKIT_NO_AVX512BF16: '1' }), BF16_PATH.fallback);
});

// [input bits, bf16-rounded bits]: ties to even, carries into the exponent, overflow to inf, NaN kept NaN
// (a signalling NaN whose payload sits in the low half must not truncate to inf), denormals rounded as integers.
const ROUNDING: [number, number][] = [
  [0x3f800000, 0x3f800000], // 1
  [0x3f808000, 0x3f800000], // 1 + 2^-8: tie, even stays
  [0x3f818000, 0x3f820000], // tie, odd rounds up
  [0x3f808001, 0x3f810000], // just above the tie
  [0x3f807fff, 0x3f800000], // just below the tie
  [0xbf808001, 0xbf810000], // negative
  [0x3fffffff, 0x40000000], // carry into the exponent
  [0x7f7fffff, 0x7f800000], // the largest float rounds to inf
  [0x7f800000, 0x7f800000], // inf
  [0xff800000, 0xff800000], // -inf
  [0x7fc00000, 0x7fc00000], // quiet NaN
  [0x7f800001, 0x7fc00000], // signalling NaN, payload in the low half: stays a (quiet) NaN
  [0xffa00000, 0xffe00000], // negative signalling NaN
  [0x00000001, 0x00000000], // smallest denormal rounds to 0
  [0x00008000, 0x00000000], // denormal tie, even stays 0
  [0x00018000, 0x00020000], // denormal tie, odd rounds up
  [0x007fffff, 0x00800000], // largest denormal rounds up to the smallest normal
  [0x80012345, 0x80010000], // negative denormal
];

test('bf16 rounding: exact bits for ties, carries, overflow, NaN, denormals (reference and every GEMM path)', () => {
  for (const [input, want] of ROUNDING) {
    const got = toBits(roundBf16(fromBits(input)));
    if (Number.isNaN(fromBits(want))) assert.ok(Number.isNaN(fromBits(got)), `reference ${input.toString(16)}`);
    else assert.equal(got, want, `reference ${input.toString(16)}: got ${got.toString(16)}`);
  }
  // The GEMM rounds while packing: C = op(A) * 1 (K = 1, B exactly 1) gives the rounded A bit for bit, and
  // C = 1 * op(B) the rounded B. Both packings (lines and rows) run through the transposes.
  const values = Float32Array.from(ROUNDING, ([b]) => fromBits(b));
  const n = values.length;
  const one = new Float32Array(n).fill(1);
  const { run } = paths();
  for (const p of run) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const asA = withPath(p, () => gemmBf16({ transA, transB, M: n, N: 1, K: 1, alpha: 1, beta: 0 }, values, one.subarray(0, 1), new Float32Array(n)));
        const asB = withPath(p, () => gemmBf16({ transA, transB, M: 1, N: n, K: 1, alpha: 1, beta: 0 }, one.subarray(0, 1), values, new Float32Array(n)));
        for (const [which, out] of [['A', asA], ['B', asB]] as const) {
          for (let i = 0; i < n; i++) {
            const [input, want] = ROUNDING[i] as [number, number];
            const got = toBits(out[i] as number);
            const what = `${p.name} trans=${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} ${which} ${input.toString(16)}`;
            if (Number.isNaN(fromBits(want))) assert.ok(Number.isNaN(out[i] as number), `${what}: not NaN`);
            // vdpbf16ps and its emulation flush denormal inputs and results to zero (documented); the other paths
            // keep them, and so does the small-row path (few rows of C, native/kernels/simd/gemm.cc) that takes
            // some of these on every path
            else if (p.bf16Path !== BF16_PATH.fallback && (want & 0x7f800000) === 0) assert.ok(got === want || (got & 0x7fffffff) === 0, what);
            else assert.equal(got, want, `${what}: got ${got.toString(16)} want ${want.toString(16)}`);
          }
        }
      }
    }
  }
});

test('bf16 gemm: the bf16 flag off is the fp32 GEMM, bit for bit', () => {
  const c: Case = { transA: false, transB: true, M: 65, N: 63, K: 257, alpha: 1, beta: 0 };
  const a = randomF32(c.M * c.K, 7), b = randomF32(c.N * c.K, 8);
  const ha = toNative(a), hb = toNative(b), hc = toNative(new Float32Array(c.M * c.N)), hd = toNative(new Float32Array(c.M * c.N));
  try {
    native.gemm(false, true, c.M, c.N, c.K, 1, ha, 0, c.K, hb, 0, c.K, 0, hc, 0, c.N, 1, 0, 0, 0);
    native.gemm(false, true, c.M, c.N, c.K, 1, ha, 0, c.K, hb, 0, c.K, 0, hd, 0, c.N, 1, 0, 0, 0, false);
    assert.deepEqual(readF32(hc, c.M * c.N), readF32(hd, c.M * c.N));
  } finally {
    for (const h of [ha, hb, hc, hd]) native.free(h);
  }
});

test('bf16 gemm is deterministic across thread counts', () => {
  const c: Case = { transA: false, transB: true, M: 300, N: 200, K: 700, alpha: 1, beta: 0 };
  const a = randomF32(c.M * c.K, 11), b = randomF32(c.N * c.K, 12);
  const threads = host.getThreads();
  const { run } = paths();
  try {
    for (const p of run) {
      if (p.isa === ISA.scalar) continue;
      host.setThreads(1);
      const one = withPath(p, () => gemmBf16(c, a, b, new Float32Array(c.M * c.N)));
      host.setThreads(3);
      const three = withPath(p, () => gemmBf16(c, a, b, new Float32Array(c.M * c.N)));
      assert.deepEqual(three, one, p.name);
    }
  } finally {
    host.setThreads(threads);
  }
});

/** The CPU's vendor string (/proc/cpuinfo vendor_id), '' where unknown. */
function cpuVendor(): string {
  try {
    return /^vendor_id\s*:\s*(\S+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch {
    return '';
  }
}

/** float64 C = op(A) op(B) of bf16-rounded operands and, per element, Σ_k |a_ik b_kj| (what bounds fp32 summation error). */
function exactWithScale(c: Case, a: Float32Array, b: Float32Array): { value: Float64Array; scale: Float64Array } {
  const ar = Float64Array.from(a, roundBf16), br = Float64Array.from(b, roundBf16);
  const value = new Float64Array(c.M * c.N), scale = new Float64Array(c.M * c.N);
  for (let i = 0; i < c.M; i++) {
    for (let j = 0; j < c.N; j++) {
      let s = 0, m = 0;
      for (let k = 0; k < c.K; k++) {
        const x = (ar[c.transA ? k * c.M + i : i * c.K + k] as number) * (br[c.transB ? j * c.K + k : k * c.N + j] as number);
        s += x;
        m += Math.abs(x);
      }
      value[i * c.N + j] = s;
      scale[i * c.N + j] = m;
    }
  }
  return { value, scale };
}

// The GEMMs of a training step of the S bench config (2,048 tokens, hidden 256, ffn 688, vocab 4,096), rows cut
// to keep the float64 reference cheap (rows do not change the per-element computation), plus odd K and tails.
const TRAINING_SHAPES: [string, Case][] = [
  ['q/k/v/o forward', { transA: false, transB: true, M: 40, N: 256, K: 256, alpha: 1, beta: 0 }],
  ['gate/up forward', { transA: false, transB: true, M: 40, N: 688, K: 256, alpha: 1, beta: 0 }],
  ['down forward', { transA: false, transB: true, M: 40, N: 256, K: 688, alpha: 1, beta: 0 }],
  ['input gradient', { transA: false, transB: false, M: 40, N: 256, K: 688, alpha: 1, beta: 0 }],
  ['weight gradient over 2,048 tokens', { transA: true, transB: false, M: 64, N: 172, K: 2048, alpha: 1, beta: 0 }],
  ['lm head chunk', { transA: false, transB: true, M: 33, N: 2048, K: 256, alpha: 1, beta: 0 }],
  ['odd tails', { transA: false, transB: true, M: 65, N: 63, K: 257, alpha: 1, beta: 0 }],
  ['odd K past a block', { transA: true, transB: false, M: 33, N: 47, K: 1101, alpha: 1, beta: 0 }],
  ['long K', { transA: false, transB: false, M: 35, N: 37, K: 4099, alpha: 1, beta: 0 }],
];

test('bf16 gemm at training shapes: every path within 8 units of fp32 rounding of Σ|a·b| of the exact result, element by element', (t) => {
  const { run } = paths();
  const worst: Record<string, number> = {};
  let seed = 300;
  for (const [name, c] of TRAINING_SHAPES) {
    const a = randomF32(c.M * c.K, seed++), b = randomF32(c.K * c.N, seed++);
    const { value, scale } = exactWithScale(c, a, b);
    for (const p of run) {
      if (p.isa === ISA.scalar && c.M * c.N * c.K > 4e6) continue; // the naive kernel is slow and has no blocking to test
      const got = withPath(p, () => gemmBf16(c, a, b, new Float32Array(c.M * c.N)));
      let units = 0;
      for (let i = 0; i < got.length; i++) units = Math.max(units, Math.abs((got[i] as number) - (value[i] as number)) / ((scale[i] as number) * 2 ** -24));
      worst[p.name] = Math.max(worst[p.name] ?? 0, units);
      // fp32 accumulation of exact products errs by a few units of 2^-24·Σ|a·b|; bf16 accumulation or a lost
      // rounding step would be thousands (bf16 keeps 8 bits: 2^-9 = 32,768 units)
      assert.ok(units <= 8, `${p.name} ${name}: ${units.toFixed(1)} units of 2^-24·Σ|a·b| from the exact product`);
    }
  }
  t.diagnostic(`largest error per path, in units of 2^-24·Σ|a·b|: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toFixed(2)}`).join('; ')}`);
});

/** Values around the bf16 denormal range: normal, denormal (flushed by vdpbf16ps), and products that underflow. */
function denormalLaden(n: number, seed: number): Float32Array {
  const base = randomF32(n, seed);
  return base.map((x, i) => (i % 5 === 0 ? x * 2 ** -127 : i % 5 === 1 ? x * 2 ** -70 : i % 5 === 2 ? x * 2 ** -60 : x));
}

test('vdpbf16ps equals its emulation bit for bit at training shapes, odd K, tails and denormals (CPUs with AVX512_BF16)', (t) => {
  if (!host.hasAvx512Bf16()) {
    t.skip('this CPU has no AVX512_BF16: the emulated vdpbf16ps path was checked against float64 above instead');
    return;
  }
  const vendor = cpuVendor();
  const nativePath: Path = { name: 'vdpbf16ps', isa: ISA.avx512, bf16Path: BF16_PATH.native };
  const emulated: Path = { name: 'emulated', isa: ISA.avx512, bf16Path: BF16_PATH.emulated };
  const cases: [string, Case, (n: number, seed: number) => Float32Array][] = [
    ...TRAINING_SHAPES.map(([name, c]): [string, Case, (n: number, seed: number) => Float32Array] => [name, c, randomF32]),
    ['denormals and underflowing products', { transA: false, transB: true, M: 70, N: 65, K: 129, alpha: 1, beta: 0 }, denormalLaden],
    ['denormals, alpha/beta, batches', { transA: true, transB: false, M: 48, N: 33, K: 67, alpha: 0.75, beta: 0.5, batch: 2 }, denormalLaden],
  ];
  let seed = 500, differing = 0, total = 0;
  for (const [name, c, make] of cases) {
    const n = c.batch ?? 1;
    const a = make(n * c.M * c.K, seed++), b = make(n * c.K * c.N, seed++), c0 = randomF32(n * c.M * c.N, seed++);
    const real = withPath(nativePath, () => gemmBf16(c, a, b, c0));
    const twin = withPath(emulated, () => gemmBf16(c, a, b, c0));
    let diff = 0;
    for (let i = 0; i < real.length; i++) if (!Object.is(real[i], twin[i])) diff++;
    differing += diff;
    total += real.length;
    // Intel's SDM defines the instruction step by step and the emulation follows it; other vendors are held to
    // the error bound of the test above and their agreement is reported
    if (vendor === 'GenuineIntel') assert.equal(diff, 0, `${name}: ${diff} of ${real.length} elements differ between vdpbf16ps and its emulation`);
  }
  t.diagnostic(`${vendor || 'unknown vendor'}: vdpbf16ps and its emulation differ in ${differing} of ${total} elements`);
});
