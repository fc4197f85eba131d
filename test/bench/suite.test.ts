// The suite's pure logic: option parsing, findings lines, medians and ratios, cpuinfo flags, section rendering.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatFlags, parseCpuinfo } from '../../bench/lib/machine.ts';
import { JSON_TAG, parseBenchOutput } from '../../bench/lib/report.ts';
import { formatNumber, formatRatio, geomean, median } from '../../bench/lib/stats.ts';
import { SECTIONS, type SectionResult, UsageError, parseSuiteArgs, renderSection, renderSummary, sectionCommand } from '../../bench/lib/suite.ts';

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
  assert.deepEqual(SECTIONS.find((s) => s.id === 'train-bf16')?.needs, { scriptFlag: '--bf16' });
});

test('parseBenchOutput splits the markdown from the tagged findings lines', () => {
  const f = { figure: 'x', target: '≥ 1.20×', measured: '1.30×', met: true };
  const out = `line 1\n${JSON_TAG}${JSON.stringify({ findings: [f] })}\n| a |\n${JSON_TAG}{not json\n`;
  const parsed = parseBenchOutput(out);
  assert.deepEqual(parsed.findings, [f]);
  assert.equal(parsed.text, `line 1\n| a |\n${JSON_TAG}{not json`);
});

test('parseCpuinfo reads the model and the relevant flags of the first processor', () => {
  const info = 'processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 fma avx512f avx512bw avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu amx_tile\n';
  const { model, flags } = parseCpuinfo(info);
  assert.equal(model, 'Intel(R) Xeon(R) Processor');
  assert.equal(flags['avx512f'], true);
  assert.equal(flags['avx512_bf16'], false);
  assert.equal(flags['amx_tile'], false);
  assert.match(formatFlags(flags), /^avx2 yes, fma yes, avx512f yes, avx512bw yes, avx512vl no, avx512dq no, avx512_vnni yes, avx512_bf16 no/);
});

test('renderSection and renderSummary: command, timing, output and findings', () => {
  const spec = SECTIONS.find((s) => s.id === 'gemm');
  assert.ok(spec);
  const ok: SectionResult = {
    spec, command: sectionCommand(spec, true), status: 'ok', text: 'CPU: x\n| a | b |\n|---|---|\n| 1 | 2 |',
    findings: [{ figure: 'fp32 GEMM', target: '≥ 0.90×', measured: '1.01×', met: true }], started: 'D', seconds: 12.4, load: { start: '1.00', end: '2.00' },
  };
  assert.equal(
    renderSection(ok),
    '### GEMM fp32 vs OpenBLAS\n\n```sh\nnode --import tsx bench/gemm/run.ts --reps 3\n```\n\nD: 12 s, load average 1.00 → 2.00.\n\nCPU: x\n\n| a | b |\n|---|---|\n| 1 | 2 |',
  );
  const skipped: SectionResult = { ...ok, status: 'skipped', text: 'no MPI', findings: [] };
  assert.match(renderSection(skipped), /Not run \(D\): no MPI$/);
  const failed: SectionResult = { ...ok, status: 'failed', text: 'exit status 1\nboom', findings: [] };
  assert.match(renderSection(failed), /\*\*Failed:\*\*\n\n```\nexit status 1\nboom\n```$/);
  const summary = renderSummary({
    date: 'D', machine: { cpu: 'CPU', cores: 2, flags: 'avx512f yes', versions: 'node v20', commit: 'abc' }, command: 'npm run bench -- --quick', quick: true,
    results: [ok, { ...failed, findings: [{ figure: 'rss', target: '≤ 1 MB', measured: '2 MB', met: false }, { figure: 'decode', target: '(recorded)', measured: '1.1×', met: null }] }],
  });
  assert.match(summary, /--quick mode/);
  assert.match(summary, /Sections: gemm \(12 s\), gemm failed\./);
  assert.match(summary, /\| fp32 GEMM \| ≥ 0\.90× \| 1\.01× \| met \|\n\| rss \| ≤ 1 MB \| 2 MB \| not met \|\n\| decode \| \(recorded\) \| 1\.1× \|  \|$/);
});
