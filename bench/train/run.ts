// bench/train: sftkit vs PyTorch training (and forward-only) tokens/s, MFU and peak RSS, side by side in
// one run, for the S/M/L configs of DESIGN.md. Usage: npm run bench:train -- [S M L] [--steps N] [--bf16]
// --bf16 adds rows for bf16 mixed precision: ours (model.dtype bfloat16) against PyTorch bf16 autocast.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

const args = process.argv.slice(2);
const stepsAt = args.indexOf('--steps');
const steps = stepsAt >= 0 ? Number(args[stepsAt + 1]) : 5;
const configs = args.filter((a, i) => !a.startsWith('--') && (stepsAt < 0 || i !== stepsAt + 1));
const profile = args.includes('--profile');
const bf16 = args.includes('--bf16');
const names = configs.length > 0 ? configs : ['S', 'M', 'L'];
const env: NodeJS.ProcessEnv = { ...process.env, SFTKIT_THREADS: '2', BENCH_THREADS: '2', OMP_NUM_THREADS: '2' };
delete env['OPENBLAS_CORETYPE'];
delete env['OPENBLAS_L2_SIZE'];
// Debian's PyTorch computes through OpenBLAS 0.3.21, whose runtime detection does not know recent Xeons and
// falls back to SSE3 kernels (see the GEMM section of docs/BENCHMARKS.md): give it its AVX-512 kernels, as
// tuning PyTorch fairly requires.
const torchEnv: NodeJS.ProcessEnv = { ...env };
if (/avx512f/.test(readFileSync('/proc/cpuinfo', 'utf8'))) torchEnv['OPENBLAS_CORETYPE'] = 'SkylakeX';

interface Result { engine: string; config: string; params: number; median_s: number; tokens_per_s: number; fwd_tokens_per_s: number; peak_rss_mb: number; gemm?: string }

function runOne(cmd: string, argv: string[], e: NodeJS.ProcessEnv = env): Result {
  const r = spawnSync(cmd, argv, { env: e, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed:\n${r.stderr}`);
  if (profile && r.stderr.includes('training step by kernel')) console.log(`\n\`\`\`\n${r.stderr.trim()}\n\`\`\`\n`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Result;
}

const dims: Record<string, { dim: number; layers: number; seq: number }> = { S: { dim: 256, layers: 4, seq: 256 }, M: { dim: 512, layers: 8, seq: 512 }, L: { dim: 768, layers: 12, seq: 512 } };
console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores), 2 threads, ${steps} timed steps per engine (median)`);
console.log('| config | engine | train tok/s | ratio | model GFLOP/s | fwd tok/s | peak RSS MB |');
console.log('|---|---|---|---|---|---|---|');
let gemmNote = '';
for (const name of names) {
  const ours = runOne(process.execPath, ['--import', 'tsx', 'bench/train/sftkit-step.ts', name, String(steps), ...(profile ? ['--profile'] : [])]);
  const torch = runOne('/usr/bin/python3', ['bench/train/torch_step.py', name, String(steps)], torchEnv);
  const d = dims[name] as { dim: number; layers: number; seq: number };
  // Model FLOPs per token: 6N + 12·L·T·d (DESIGN.md).
  const flopsPerToken = (p: number): number => 6 * p + 12 * d.layers * d.seq * d.dim;
  const rows: [Result, Result][] = [[ours, torch], [torch, torch]];
  if (bf16) {
    const oursBf16 = runOne(process.execPath, ['--import', 'tsx', 'bench/train/sftkit-step.ts', name, String(steps), '--dtype', 'bfloat16']);
    const torchBf16 = runOne('/usr/bin/python3', ['bench/train/torch_step.py', name, String(steps), '--bf16'], torchEnv);
    rows.push([oursBf16, torchBf16], [torchBf16, torchBf16]);
    if (oursBf16.gemm) gemmNote = oursBf16.gemm;
  }
  // Each row's ratio is against PyTorch in the same precision.
  for (const [r, base] of rows) {
    const ratio = r.tokens_per_s / base.tokens_per_s;
    console.log(
      `| ${name} | ${r.engine} | ${r.tokens_per_s.toFixed(0)} | ${ratio.toFixed(2)}× | ${((r.tokens_per_s * flopsPerToken(r.params)) / 1e9).toFixed(1)} | ${r.fwd_tokens_per_s.toFixed(0)} | ${r.peak_rss_mb.toFixed(0)} |`,
    );
  }
}
if (gemmNote) console.log(`\nsftkit bf16 GEMMs ran on: ${gemmNote}`);
