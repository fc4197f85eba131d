// bench/train: sftkit vs tuned PyTorch training (and forward-only) tokens/s, MFU and peak RSS, side by side in
// one run, for the S/M/L configs of DESIGN.md.
// Usage: npm run bench:train -- [S M L] [--steps N] [--profile] [--compare-malloc] [--bf16]
// (--compare-malloc adds a PyTorch row without tcmalloc, to see what the allocator changes; --bf16 adds rows for
// bf16 mixed precision: ours (model.dtype bfloat16) against PyTorch bf16 autocast.)
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { type Finding, emitFindings } from '../lib/report.ts';
import { PYTHON, torchEnv } from '../lib/torch-env.ts';

const args = process.argv.slice(2);
const stepsAt = args.indexOf('--steps');
const steps = stepsAt >= 0 ? Number(args[stepsAt + 1]) : 5;
const configs = args.filter((a, i) => !a.startsWith('--') && (stepsAt < 0 || i !== stepsAt + 1));
const profile = args.includes('--profile');
const bf16 = args.includes('--bf16');
const compareMalloc = args.includes('--compare-malloc');
const names = configs.length > 0 ? configs : ['S', 'M', 'L'];
const env: NodeJS.ProcessEnv = { ...process.env, SFTKIT_THREADS: '2', BENCH_THREADS: '2', OMP_NUM_THREADS: '2' };
delete env['OPENBLAS_CORETYPE'];
delete env['OPENBLAS_L2_SIZE'];
// Tuned PyTorch (bench/lib/torch-env.ts): 2 threads, OMP_WAIT_POLICY=PASSIVE, tcmalloc, and OpenBLAS's AVX-512
// kernels where OpenBLAS 0.3.21 mis-detects this CPU (it falls back to SSE3 Prescott kernels on recent Xeons).
const tuned = torchEnv(env, { threads: 2 });
const plainMalloc = torchEnv(env, { threads: 2, tcmalloc: false });

interface Result { engine: string; config: string; params: number; median_s: number; tokens_per_s: number; fwd_tokens_per_s: number; peak_rss_mb: number; gemm?: string; tcmalloc?: boolean; gemm_peak_gflops?: number }

function runOne(cmd: string, argv: string[], e: NodeJS.ProcessEnv = env): Result {
  const r = spawnSync(cmd, argv, { env: e, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed:\n${r.stderr}`);
  if (profile && r.stderr.includes('training step by kernel')) console.log(`\n\`\`\`\n${r.stderr.trim()}\n\`\`\`\n`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Result;
}

const dims: Record<string, { dim: number; layers: number; seq: number }> = { S: { dim: 256, layers: 4, seq: 256 }, M: { dim: 512, layers: 8, seq: 512 }, L: { dim: 768, layers: 12, seq: 512 } };
console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores), 2 threads, ${steps} timed steps per engine after 1 warm-up step (median)`);
console.log(tuned.note);
const findings: Finding[] = [];
console.log('| config | engine | train tok/s | ratio | model GFLOP/s | fwd tok/s | peak RSS MB |');
console.log('|---|---|---|---|---|---|---|');
let gemmNote = '';
for (const name of names) {
  const ours = runOne(process.execPath, ['--import', 'tsx', 'bench/train/sftkit-step.ts', name, String(steps), ...(profile ? ['--profile'] : [])]);
  const torch = runOne(PYTHON, ['bench/train/torch_step.py', name, String(steps)], tuned.env);
  const extra = compareMalloc ? [{ ...runOne(PYTHON, ['bench/train/torch_step.py', name, String(steps)], plainMalloc.env), engine: `pytorch ${torch.engine.split(' ')[1] ?? ''} (glibc malloc)` }] : [];
  const d = dims[name] as { dim: number; layers: number; seq: number };
  // Model FLOPs per token: 6N + 12·L·T·d (DESIGN.md).
  const flopsPerToken = (p: number): number => 6 * p + 12 * d.layers * d.seq * d.dim;
  const rows: [Result, Result][] = [[ours, torch], [torch, torch], ...extra.map((e): [Result, Result] => [e, torch])];
  let oursBf16: Result | undefined;
  let torchBf16: Result | undefined;
  if (bf16) {
    oursBf16 = runOne(process.execPath, ['--import', 'tsx', 'bench/train/sftkit-step.ts', name, String(steps), '--dtype', 'bfloat16']);
    torchBf16 = runOne(PYTHON, ['bench/train/torch_step.py', name, String(steps), '--bf16'], tuned.env);
    rows.push([oursBf16, torchBf16], [torchBf16, torchBf16]);
    if (oursBf16.gemm) gemmNote = oursBf16.gemm;
  }
  // Each row's ratio is against tuned PyTorch in the same precision.
  for (const [r, base] of rows) {
    const ratio = r.tokens_per_s / base.tokens_per_s;
    console.log(
      `| ${name} | ${r.engine} | ${r.tokens_per_s.toFixed(0)} | ${ratio.toFixed(2)}× | ${((r.tokens_per_s * flopsPerToken(r.params)) / 1e9).toFixed(1)} | ${r.fwd_tokens_per_s.toFixed(0)} | ${r.peak_rss_mb.toFixed(0)} |`,
    );
  }
  const ratio = ours.tokens_per_s / torch.tokens_per_s;
  // With --bf16 the fp32 rows are context for the bf16 ones; their findings come from the fp32 run.
  if (!bf16) findings.push({ figure: `training tok/s fp32, ${name}, vs tuned PyTorch`, target: '≥ 1.20×', measured: `${ratio.toFixed(2)}×`, met: ratio >= 1.2 });
  if (oursBf16 && torchBf16) {
    const r16 = oursBf16.tokens_per_s / torchBf16.tokens_per_s;
    findings.push({ figure: `training tok/s bf16, ${name}, vs PyTorch bf16 autocast`, target: '≥ 1.20×', measured: `${r16.toFixed(2)}×`, met: r16 >= 1.2 });
  }
  // Model FLOP utilisation: model FLOP/s over the best fp32 GEMM rate measured in the same process.
  const peak = ours.gemm_peak_gflops;
  if (!bf16 && peak && name !== 'S') {
    const mfu = (ours.tokens_per_s * flopsPerToken(ours.params)) / 1e9 / peak;
    findings.push({ figure: `model FLOP utilisation, ${name}, of the GEMM peak (${peak.toFixed(0)} GFLOP/s in the same run)`, target: '≥ 70%', measured: `${(mfu * 100).toFixed(0)}%`, met: mfu >= 0.7 });
  }
  if (!bf16) findings.push({ figure: `training peak RSS, ${name}, vs PyTorch`, target: '≤ 1.00×', measured: `${(ours.peak_rss_mb / torch.peak_rss_mb).toFixed(2)}×`, met: ours.peak_rss_mb <= torch.peak_rss_mb });
}
if (gemmNote) console.log(`\nsftkit bf16 GEMMs ran on: ${gemmNote}`);
emitFindings(findings);
