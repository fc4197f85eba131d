// The suite's pure logic: option parsing, findings and peaks lines, medians and ratios, cpuinfo and the CPU
// identity, skip reasons, section rendering.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuIdentity, formatFlags, parseCpuinfo } from '../../bench/lib/machine.ts';
import { JSON_TAG, type Peak, parseBenchOutput } from '../../bench/lib/report.ts';
import { TOOLS, type Tool, installLine, missingTools, skipReason } from '../../bench/lib/requirements.ts';
import { formatNumber, formatRatio, geomean, median } from '../../bench/lib/stats.ts';
import {
  SECTIONS, type SectionResult, UsageError, parseSuiteArgs, renderCpu, renderPeaks, renderSection, renderSummary, sectionCommand,
} from '../../bench/lib/suite.ts';

test('median, geomean and the number formats', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]), RangeError);
  assert.equal(geomean([2, 8]), 4);
  assert.equal(formatRatio(1.2345), '1.23×');
  assert.equal(formatRatio(Infinity), 'n/a');
  assert.equal(formatRatio(NaN), 'n/a');
  assert.deepEqual([12345.6, 123.45, 12.345, 0.5].map(formatNumber), ['12346', '123.5', '12.35', '0.50']);
});

test('parseSuiteArgs: defaults, --quick, --only, --skip, --out, --print', () => {
  const all = parseSuiteArgs([]);
  assert.equal(all.quick, false);
  assert.equal(all.out, 'docs/BENCHMARKS.md');
  assert.deepEqual(all.sections.map((s) => s.id), SECTIONS.map((s) => s.id));
  const some = parseSuiteArgs(['--quick', '--only', 'gemm,train,generate', '--skip', 'train', '--out', '/tmp/b.md']);
  assert.equal(some.quick, true);
  assert.equal(some.out, '/tmp/b.md');
  assert.deepEqual(some.sections.map((s) => s.id), ['gemm', 'generate']);
  assert.equal(parseSuiteArgs(['--print']).out, null);
  assert.throws(() => parseSuiteArgs(['--only', 'gpu']), (e) => e instanceof UsageError && /unknown section gpu/.test(e.message));
  assert.throws(() => parseSuiteArgs(['--only']), UsageError);
  assert.throws(() => parseSuiteArgs(['--fast']), /unknown argument --fast/);
  assert.throws(() => parseSuiteArgs(['--only', 'gemm', '--skip', 'gemm']), /no section left/);
});

test('sectionCommand quotes the exact command of full and quick runs', () => {
  const train = SECTIONS.find((s) => s.id === 'train');
  assert.ok(train);
  assert.deepEqual(sectionCommand(train, false), ['node', '--import', 'tsx', 'bench/train/run.ts', 'S', 'M', 'L', '--steps', '5']);
  assert.deepEqual(sectionCommand(train, true), ['node', '--import', 'tsx', 'bench/train/run.ts', 'S', 'M', 'L', '--steps', '2']);
  assert.deepEqual(sectionCommand(SECTIONS.find((s) => s.id === 'train-bf16') ?? train, false), ['node', '--import', 'tsx', 'bench/train/run.ts', 'S', 'M', 'L', '--steps', '5', '--bf16']);
});

test('every section names the tools it compares against', () => {
  const needs = Object.fromEntries(SECTIONS.map((s) => [s.id, s.needs]));
  assert.deepEqual(needs, {
    gemm: ['cc', 'openblas'], train: ['torch'], 'train-bf16': ['torch'], generate: ['torch'], tokenizer: ['spm', 'time'], serve: [], data: [], convert: [], distributed: ['mpi'],
  });
});

test('skip reasons: one line naming what is missing and the Debian package to install', () => {
  assert.equal(skipReason(['openblas']), 'needs OpenBLAS headers and library (`cblas.h`, `-lopenblas`): `apt-get install -y --no-install-recommends libopenblas-dev`');
  assert.equal(skipReason(['torch']), 'needs PyTorch (`import torch` in /usr/bin/python3): `apt-get install -y --no-install-recommends python3-torch`');
  assert.equal(skipReason(['spm']), 'needs `spm_encode`: `apt-get install -y --no-install-recommends sentencepiece`');
  assert.equal(skipReason(['mpi']), 'needs `mpirun`: `apt-get install -y --no-install-recommends openmpi-bin`');
  assert.equal(
    skipReason(['cc', 'openblas', 'time']),
    'needs a C compiler (`cc`), OpenBLAS headers and library (`cblas.h`, `-lopenblas`) and GNU time (`/usr/bin/time`): `apt-get install -y --no-install-recommends gcc libopenblas-dev time`',
  );
  for (const s of SECTIONS) assert.doesNotMatch(skipReason(s.needs), /\n/, s.id);
  // One package per tool, named once.
  assert.equal(installLine(['torch', 'torch']), 'apt-get install -y --no-install-recommends python3-torch');
  // The probe decides what is missing, in the section's order.
  const absent = new Set<Tool>([TOOLS.openblas, TOOLS.time]);
  assert.deepEqual(missingTools(['cc', 'openblas', 'spm', 'time'], (t) => !absent.has(t)), ['openblas', 'time']);
  assert.deepEqual(missingTools([], () => false), []);
});

test('parseBenchOutput splits the markdown from the tagged findings and peaks lines', () => {
  const f = { figure: 'x', target: '≥ 1.20×', measured: '1.30×', met: true };
  const p: Peak = { dtype: 'bfloat16', gflops: 400, kernel: 'vdpbf16ps (AVX512_BF16)', how: 'config M' };
  const out = `line 1\n${JSON_TAG}${JSON.stringify({ findings: [f] })}\n| a |\n${JSON_TAG}{not json\n${JSON_TAG}${JSON.stringify({ findings: [], peaks: [p] })}\n`;
  const parsed = parseBenchOutput(out);
  assert.deepEqual(parsed.findings, [f]);
  assert.deepEqual(parsed.peaks, [p]);
  assert.equal(parsed.text, `line 1\n| a |\n${JSON_TAG}{not json`);
});

test('renderPeaks keeps the best peak of each dtype, and says nothing when none was measured', () => {
  const peaks: Peak[] = [
    { dtype: 'float32', gflops: 210.04, kernel: 'AVX-512 fp32 micro-kernel', how: 'config S' },
    { dtype: 'bfloat16', gflops: 380, kernel: 'vdpbf16ps (AVX512_BF16)', how: 'config S' },
    { dtype: 'float32', gflops: 221.96, kernel: 'AVX-512 fp32 micro-kernel', how: 'config L' },
  ];
  const md = renderPeaks({ date: 'D', peaks });
  assert.ok(md);
  assert.match(md, /^GEMM peaks, D: /);
  assert.match(md, /\| fp32 \| 222\.0 \| AVX-512 fp32 micro-kernel \| config L \| 2 \|\n\| bf16 \| 380\.0 \| vdpbf16ps \(AVX512_BF16\) \| config S \| 1 \|$/);
  assert.equal(renderPeaks({ date: 'D', peaks: [] }), null);
});

test('renderCpu gives model name, vendor family/model, cores, flags and the key', () => {
  const cpu = parseCpuinfo('vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx2 fma avx512f avx512_bf16\n');
  const md = renderCpu({ identity: cpuIdentity(cpu), cpu: cpu.model, vendor: cpu.vendor, family: cpu.family, modelNumber: cpu.modelNumber, cores: 2, flags: formatFlags(cpu.flags) });
  assert.match(md, /^Model name: Intel\(R\) Xeon\(R\) Platinum 8488C; vendor GenuineIntel, family 6, model 143; 2 cores\.\n\nISA flags: avx2 yes, fma yes, avx512f yes, .*avx512_bf16 yes, amx_bf16 no, amx_tile no\.\n\n/);
  assert.match(md, /`intel-xeon-platinum-8488c-f6-m143-avx512-bf16`/);
});

test('parseCpuinfo reads the model, vendor, family/model and the relevant flags of the first processor', () => {
  // "model" comes after "model name" here, and the second processor differs: neither may leak into the result.
  const info = 'processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Intel(R) Xeon(R) Processor\nmodel\t\t: 207\n'
    + 'flags\t\t: fpu avx2 fma avx512f avx512bw avx512_vnni\n\nprocessor\t: 1\nmodel\t\t: 1\nflags\t\t: fpu amx_tile\n';
  const cpu = parseCpuinfo(info);
  assert.equal(cpu.model, 'Intel(R) Xeon(R) Processor');
  assert.equal(cpu.vendor, 'GenuineIntel');
  assert.equal(cpu.family, 6);
  assert.equal(cpu.modelNumber, 207);
  assert.equal(cpu.flags['avx512f'], true);
  assert.equal(cpu.flags['avx512_bf16'], false);
  assert.equal(cpu.flags['amx_tile'], false);
  assert.match(formatFlags(cpu.flags), /^avx2 yes, fma yes, avx512f yes, avx512bw yes, avx512vl no, avx512dq no, avx512_vnni yes, avx512_bf16 no/);
  // "model" before "model name" (the usual order) reads the same.
  const amd = parseCpuinfo('vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: avx2 fma avx512f avx512_bf16\n');
  assert.deepEqual([amd.vendor, amd.family, amd.modelNumber, amd.model], ['AuthenticAMD', 25, 17, 'AMD EPYC 9R14 96-Core Processor']);
  // Nothing readable: placeholders, no numbers.
  assert.deepEqual(parseCpuinfo(''), { model: 'unknown CPU', vendor: 'unknown vendor', family: null, modelNumber: null, flags: parseCpuinfo('').flags });
});

test('cpuIdentity keys results by model name, family/model, SIMD level and AVX512_BF16', () => {
  const xeon = parseCpuinfo('vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 fma avx512f\n');
  assert.deepEqual(cpuIdentity(xeon), { key: 'intel-xeon-processor-f6-m207-avx512', label: 'Intel(R) Xeon(R) Processor (GenuineIntel family 6 model 207; AVX-512, no AVX512_BF16)' });
  // The same model name on another microarchitecture, or with AVX512_BF16, is another CPU.
  assert.equal(cpuIdentity({ ...xeon, modelNumber: 143 }).key, 'intel-xeon-processor-f6-m143-avx512');
  assert.deepEqual(cpuIdentity({ ...xeon, flags: { ...xeon.flags, avx512_bf16: true } }), {
    key: 'intel-xeon-processor-f6-m207-avx512-bf16', label: 'Intel(R) Xeon(R) Processor (GenuineIntel family 6 model 207; AVX-512, AVX512_BF16)',
  });
  const amd = parseCpuinfo('vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: avx2 fma avx512f avx512_bf16\n');
  assert.equal(cpuIdentity(amd).key, 'amd-epyc-9r14-96-core-processor-f25-m17-avx512-bf16');
  const avx2 = parseCpuinfo('vendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 49\nmodel name\t: AMD EPYC 7B12\nflags\t\t: avx2 fma\n');
  assert.deepEqual(cpuIdentity(avx2), { key: 'amd-epyc-7b12-f23-m49-avx2', label: 'AMD EPYC 7B12 (AuthenticAMD family 23 model 49; AVX2, no AVX-512)' });
  // No cpuinfo (another OS, a sandbox): still a valid key.
  assert.deepEqual(cpuIdentity(parseCpuinfo('')), { key: 'unknown-cpu-scalar', label: 'unknown CPU (unknown vendor; no AVX2)' });
  for (const c of [xeon, amd, avx2, parseCpuinfo('')]) assert.match(cpuIdentity(c).key, /^[a-z0-9-]+$/);
});

test('renderSection and renderSummary: command, timing, output and findings', () => {
  const spec = SECTIONS.find((s) => s.id === 'gemm');
  assert.ok(spec);
  const ok: SectionResult = {
    spec, command: sectionCommand(spec, true), status: 'ok', text: 'CPU: x\n| a | b |\n|---|---|\n| 1 | 2 |',
    findings: [{ figure: 'fp32 GEMM', target: '≥ 0.90×', measured: '1.01×', met: true }], peaks: [], started: 'D', seconds: 12.4, load: { start: '1.00', end: '2.00' },
  };
  assert.equal(
    renderSection(ok),
    '#### GEMM fp32 vs OpenBLAS\n\n```sh\nnode --import tsx bench/gemm/run.ts --reps 3\n```\n\nD: 12 s, load average 1.00 → 2.00.\n\nCPU: x\n\n| a | b |\n|---|---|\n| 1 | 2 |',
  );
  const skipped: SectionResult = { ...ok, status: 'skipped', text: skipReason(['openblas']), findings: [] };
  assert.match(renderSection(skipped), /\n\nNot run \(D\): needs OpenBLAS headers and library \(`cblas\.h`, `-lopenblas`\): `apt-get install -y --no-install-recommends libopenblas-dev`$/);
  const failed: SectionResult = { ...ok, status: 'failed', text: 'exit status 1\nboom', findings: [] };
  assert.match(renderSection(failed), /\*\*Failed:\*\*\n\n```\nexit status 1\nboom\n```$/);
  const summary = renderSummary({
    date: 'D', machine: { identity: { key: 'k', label: 'CPU (GenuineIntel family 6 model 207; AVX-512, no AVX512_BF16)' }, cores: 2, flags: 'avx512f yes', versions: 'node v20', commit: 'abc' },
    command: 'npm run bench -- --quick', quick: true,
    results: [ok, { ...failed, findings: [{ figure: 'rss', target: '≤ 1 MB', measured: '2 MB', met: false }, { figure: 'decode', target: '(recorded)', measured: '1.1×', met: null }] }],
  });
  assert.match(summary, /^### All benchmarks/);
  assert.match(summary, /--quick mode/);
  assert.match(summary, /Machine: CPU \(GenuineIntel family 6 model 207; AVX-512, no AVX512_BF16\), 2 cores; avx512f yes\./);
  assert.match(summary, /Sections: gemm \(12 s\), gemm failed\./);
  assert.match(summary, /\| fp32 GEMM \| ≥ 0\.90× \| 1\.01× \| met \|\n\| rss \| ≤ 1 MB \| 2 MB \| not met \|\n\| decode \| \(recorded\) \| 1\.1× \|  \|$/);
});
