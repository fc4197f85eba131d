// bench/train: sftkit vs tuned PyTorch training (and forward-only) tokens/s, model FLOP utilisation against the
// GEMM peak of the dtype that runs (measured in sftkit's process) and peak RSS, side by side in one run, for the
// S/M/L configs of DESIGN.md.
// Usage: npm run bench:train -- [S M L] [--steps N] [--profile] [--compare-malloc] [--bf16] [--lora R]
// (--compare-malloc adds a PyTorch row without tcmalloc, to see what the allocator changes; --bf16 adds rows for
// bf16 mixed precision: ours (model.dtype bfloat16) against PyTorch bf16 autocast; --lora R adds rows for LoRA rank R
// on every linear, ours against PyTorch with the same LoRA written by hand, the ratio against that PyTorch run,
// plus our LoRA against our own full fine-tuning: separate processes, and interleaved in one (lora-vs-full.ts).)
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { type Finding, type Peak, emitFindings } from '../lib/report.ts';
import { exitIfMissing } from '../lib/requirements.ts';
import { PYTHON, torchEnv } from '../lib/torch-env.ts';
import { type ModelDims, type StepResult, modelGflops, peakFor, trainFindings } from './findings.ts';

exitIfMissing('bench/train/run.ts', ['torch']);

const args = process.argv.slice(2);
const stepsAt = args.indexOf('--steps');
const steps = stepsAt >= 0 ? Number(args[stepsAt + 1]) : 5;
const loraAt = args.indexOf('--lora');
const loraRank = loraAt >= 0 ? Number(args[loraAt + 1]) : 0;
const configs = args.filter((a, i) => !a.startsWith('--') && (stepsAt < 0 || i !== stepsAt + 1) && (loraAt < 0 || i !== loraAt + 1));
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

function runOne(cmd: string, argv: string[], e: NodeJS.ProcessEnv = env): StepResult {
  const r = spawnSync(cmd, argv, { env: e, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed:\n${r.stderr}`);
  if (profile && r.stderr.includes('training step by kernel')) console.log(`\n\`\`\`\n${r.stderr.trim()}\n\`\`\`\n`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as StepResult;
}

/**
 * One table row: a run, the PyTorch run of the same precision its ratio is against, and the sftkit run whose
 * in-process GEMM peak of `dtype` its utilisation is measured by.
 */
interface Row { run: StepResult; base: StepResult; meter: StepResult; dtype: 'float32' | 'bfloat16' }

const dims: Record<string, ModelDims> = { S: { dim: 256, layers: 4, seq: 256 }, M: { dim: 512, layers: 8, seq: 512 }, L: { dim: 768, layers: 12, seq: 512 } };
console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores), 2 threads, ${steps} timed steps per engine after 1 warm-up step (median)`);
console.log(tuned.note);
console.log('model FLOPs per token: 6N + 12·L·T·d; MFU: model GFLOP/s over the GEMM peak of the row\'s dtype, measured in sftkit\'s process of the same config (the PyTorch rows against the same peak)');
const findings: Finding[] = [];
const peaks: Peak[] = [];
const peakRows: string[] = [];
console.log('| config | engine | train tok/s | ratio | model GFLOP/s | MFU | fwd tok/s | peak RSS MB |');
console.log('|---|---|---|---|---|---|---|---|');
let bf16Note = '';
let method = '';
for (const name of names) {
  const d = dims[name];
  if (!d) throw new Error(`bench/train: unknown config ${name} (S, M or L)`);
  const ours = runOne(process.execPath, ['--import', 'tsx', 'bench/train/sftkit-step.ts', name, String(steps), ...(profile ? ['--profile'] : [])]);
  const torch = runOne(PYTHON, ['bench/train/torch_step.py', name, String(steps)], tuned.env);
  const extra = compareMalloc ? [{ ...runOne(PYTHON, ['bench/train/torch_step.py', name, String(steps)], plainMalloc.env), engine: `pytorch ${torch.engine.split(' ')[1] ?? ''} (glibc malloc)` }] : [];
  const rows: Row[] = [
    { run: ours, base: torch, meter: ours, dtype: 'float32' },
    { run: torch, base: torch, meter: ours, dtype: 'float32' },
    ...extra.map((e): Row => ({ run: e, base: torch, meter: ours, dtype: 'float32' })),
  ];
  let pair: { ours: StepResult; torch: StepResult } | undefined;
  if (bf16) {
    const oursBf16 = runOne(process.execPath, ['--import', 'tsx', 'bench/train/sftkit-step.ts', name, String(steps), '--dtype', 'bfloat16']);
    const torchBf16 = runOne(PYTHON, ['bench/train/torch_step.py', name, String(steps), '--bf16'], tuned.env);
    rows.push({ run: oursBf16, base: torchBf16, meter: oursBf16, dtype: 'bfloat16' }, { run: torchBf16, base: torchBf16, meter: oursBf16, dtype: 'bfloat16' });
    pair = { ours: oursBf16, torch: torchBf16 };
    bf16Note = `${oursBf16.bf16_kernel ?? '?'} (binding path: ${oursBf16.bf16_path ?? '?'})`;
  }
  if (loraRank > 0) {
    const oursLora = runOne(process.execPath, ['--import', 'tsx', 'bench/train/sftkit-step.ts', name, String(steps), '--lora', String(loraRank)]);
    const torchLora = runOne(PYTHON, ['bench/train/torch_step.py', name, String(steps), '--lora', String(loraRank)], tuned.env);
    rows.push({ run: oursLora, base: torchLora, meter: ours, dtype: 'float32' }, { run: torchLora, base: torchLora, meter: ours, dtype: 'float32' });
    console.log(`(${name}: sftkit LoRA r${loraRank} runs at ${(oursLora.tokens_per_s / ours.tokens_per_s).toFixed(2)}× sftkit full fine-tuning; peak RSS ${oursLora.peak_rss_mb.toFixed(0)} vs ${ours.peak_rss_mb.toFixed(0)} MB)`);
    // The same comparison with the two models' steps alternating in one process (bench/train/lora-vs-full.ts):
    // adjacent steps share the machine's load, which moves separate processes ±15%.
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/train/lora-vs-full.ts', name, String(Math.max(6, 2 * steps)), '--lora', String(loraRank)], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`bench/train/lora-vs-full.ts ${name} failed:\n${r.stderr}`);
    const inter = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { pairs: number; full_tokens_per_s: number; lora_tokens_per_s: number; ratio_median: number; ratios: number[] };
    console.log(`(${name}: interleaved in one process, ${inter.pairs} pairs of steps: full ${inter.full_tokens_per_s.toFixed(0)}, LoRA r${loraRank} ${inter.lora_tokens_per_s.toFixed(0)} tok/s; median ratio of adjacent steps ${inter.ratio_median.toFixed(2)}× (${inter.ratios.map((x) => x.toFixed(2)).join(' ')}))`);
  }
  for (const { run, base, meter, dtype } of rows) {
    const gflops = modelGflops(run, d);
    const peak = peakFor(meter, dtype);
    const mfu = peak === null ? '' : `${((gflops / peak) * 100).toFixed(0)}%`;
    console.log(
      `| ${name} | ${run.engine} | ${run.tokens_per_s.toFixed(0)} | ${(run.tokens_per_s / base.tokens_per_s).toFixed(2)}× | ${gflops.toFixed(1)} | ${mfu} | ${run.fwd_tokens_per_s.toFixed(0)} | ${run.peak_rss_mb.toFixed(0)} |`,
    );
  }
  // The peaks each sftkit process measured (both dtypes in every process; the one of its own dtype is its MFU's).
  for (const meter of [ours, ...(pair ? [pair.ours] : [])]) {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const gflops = peakFor(meter, dtype);
      if (gflops === null) continue;
      const shape = dtype === 'float32' ? meter.gemm_peak_shape : meter.bf16_gemm_peak_shape;
      const kernel = (dtype === 'float32' ? meter.fp32_kernel : meter.bf16_kernel) ?? '?';
      peakRows.push(`| ${name} | ${meter.engine} | ${dtype === 'float32' ? 'fp32' : 'bf16'} | ${gflops.toFixed(1)} | ${shape ?? '?'} |`);
      peaks.push({ dtype, gflops, kernel, how: `bench/train config ${name}, in the ${meter.engine} process: ${shape ?? '?'}` });
    }
    method = meter.peak_method ?? method;
  }
  findings.push(...trainFindings({ name, dims: d, ours, torch, ...(pair ? { bf16: pair } : {}) }));
}
if (peakRows.length > 0) {
  console.log(`\nGEMM peaks measured in sftkit's processes before their steps (${method}):\n`);
  console.log('| config | process | dtype | peak GFLOP/s | at |');
  console.log('|---|---|---|---|---|');
  for (const row of peakRows) console.log(row);
}
if (bf16Note) console.log(`\nsftkit bf16 GEMMs ran on: ${bf16Note}`);
emitFindings(findings, peaks);
