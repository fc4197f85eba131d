// bench/distributed/zero: peak RSS per rank (VmHWM) of config L training steps at world size 1, 2 and 4 with
// ZeRO stages 0 to 3, beside the model + gradient + optimizer bytes each rank holds and the ideal
// 16 bytes × params / N, and the elements each rank hands to collectives per step against the theory.
// The peak is taken twice: over the whole process, and over the training steps only (VmHWM reset through
// /proc/self/clear_refs once the optimizer is built). Stage 3 builds the model sharded, as `sftkit run` does.
// Collective volume: the bytes the collectives wrapper (src/backend/collectives.ts, mpi.traffic()) was handed.
// ZERO_BENCH_CONFIG=S|M picks another config of bench/train/configs.json (a quick check); ZERO_BENCH_ONLY=2/3r,4/0 runs those rows only.
// Usage: node --import tsx bench/distributed/zero.ts [--steps N]          (runs mpirun; prints a Markdown table)
// Rank:  mpirun -np N node --import tsx bench/distributed/zero.ts --rank STAGE STEPS [recompute]   (prints JSON per rank)
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { mpi } from '../../src/backend/collectives.ts';
import type { ComputeBackend } from '../../src/backend/compute.ts';
import { type ProcessGroup, ShardedParameters, initProcessGroup } from '../../src/distributed/index.ts';
import { benchModel } from '../lib/bench-model.ts';
import { Llama } from '../../src/models/llama.ts';
import { noDecay } from '../../src/models/model.ts';
import { type FlatLayout, Rng } from '../../src/tensor/index.ts';
import { clipScale } from '../../src/train/adamw.ts';
import { lossStep } from '../../src/train/loss-step.ts';
import { estimateTrainingMemory } from '../../src/train/memory-estimate.ts';
import { ReplicatedAdamW, type TrainOptimizer, ZeroAdamW } from '../../src/train/optimizer.ts';
import { exitIfMissing } from '../lib/requirements.ts';

/** Rows per rank and their length: small, so that the weights, gradients and moments dominate. */
const ROWS = 1;
const SEQ = 128;

function vmHwmBytes(): number {
  const m = readFileSync('/proc/self/status', 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0); false where the kernel refuses. */
function resetHwm(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

function rank(stage: 0 | 1 | 2 | 3, steps: number, recompute: boolean): void {
  const { cfg } = benchModel(process.env.ZERO_BENCH_CONFIG ?? 'L');
  const real = initProcessGroup();
  const pg: ProcessGroup = real;
  const before = vmHwmBytes();
  // Stage 3 as `sftkit run` builds it: each rank allocates and initialises only its shard of the weights.
  const sharding = stage === 3 ? { shard: { worldSize: real.size, make: (layout: FlatLayout, backend: ComputeBackend) => new ShardedParameters({ layout, backend }, pg) } } : {};
  const model = new Llama(cfg, { seed: 0, weights: { gradients: stage < 2, ...sharding } });
  const P = model.params.layout.size;
  const adamw = { lr: 1e-4, weightDecay: 0.1, noDecay };
  const opt: TrainOptimizer = stage === 0 ? new ReplicatedAdamW(model.params, pg, adamw) : new ZeroAdamW(model.params, pg, adamw, stage);
  const setupPeak = vmHwmBytes();
  const reset = resetHwm();
  // Bytes handed to each collective, counted by the collectives wrapper (src/backend/collectives.ts).
  mpi.resetTraffic();
  const rng = new Rng(1 + real.rank);
  const ids = Int32Array.from({ length: ROWS * SEQ }, () => rng.int(cfg.vocabSize));
  const targets = Int32Array.from({ length: ROWS * SEQ }, () => rng.int(cfg.vocabSize));
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    lossStep(model, { rows: ROWS, ids, targets }, { seqLength: SEQ, normaliser: ROWS * SEQ * real.size, recompute });
    opt.microBatchDone();
    opt.reduceGradients();
    opt.update(1e-4, clipScale(opt.gradNorm(), 1.0), () => false);
  }
  const seconds = (performance.now() - t0) / 1000 / steps;
  const trainPeak = reset ? vmHwmBytes() : NaN;
  const N = real.size;
  // What this rank holds for the weights, their gradients and the moments (stage 3: its weight shard plus the
  // most gathered layer groups alive at once; stages 2 and 3: its gradient shard plus the most buckets alive).
  const bucket = opt instanceof ZeroAdamW && opt.sharded ? opt.sharded.peakBucketBytes : 0;
  const gathered = opt instanceof ZeroAdamW && opt.weights ? opt.weights.peakGatheredBytes : 0;
  const shard = Math.ceil(P / N) * 4;
  const weightBytes = stage === 3 ? shard + gathered : P * 4;
  const gradBytes = stage >= 2 ? shard + bucket : P * 4;
  const state = weightBytes + gradBytes + (stage >= 1 ? 2 * shard : P * 8);
  const est = estimateTrainingMemory({ config: cfg, weights: model.params.counts(), batchSize: ROWS, seqLength: SEQ, recompute, worldSize: N, zeroStage: stage });
  // Float32 elements per step (the gradient norm's one float64 all-reduce adds 8 bytes: noise at this size).
  const traffic = mpi.traffic();
  const perStep = { allReduce: traffic.allReduce.bytes / 4 / steps, reduceScatter: traffic.reduceScatter.bytes / 4 / steps, allGather: traffic.allGather.bytes / 4 / steps };
  console.log(JSON.stringify({ rank: real.rank, world: N, stage, recompute, params: P, seconds_per_step: seconds, runtime_rss: before, peak_rss: Math.max(setupPeak, trainPeak || 0), train_peak_rss: trainPeak, state_bytes: state, bucket_bytes: bucket, gathered_bytes: gathered, estimate: est.total, sent_per_step: perStep }));
  opt.finish();
  opt.release();
  model.release();
}

interface Row {
  rank: number; world: number; stage: number; recompute: boolean; params: number; seconds_per_step: number; runtime_rss: number; peak_rss: number;
  train_peak_rss: number; state_bytes: number; bucket_bytes: number; gathered_bytes: number; estimate: number; sent_per_step: Record<string, number>;
}

function main(steps: number): void {
  exitIfMissing('bench/distributed/zero.ts', ['mpi']);
  const asRoot = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
  const mb = (b: number): string => (b / 2 ** 20).toFixed(0);
  const name = process.env.ZERO_BENCH_CONFIG ?? 'L';
  console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores); config ${name}${name === 'L' ? ' (dim 768, 12 layers, vocab 32000)' : ''}, ${ROWS} row × ${SEQ} tokens per rank, 1 thread per rank, ${steps} steps, fp32 AdamW`);
  console.log('| world | stage | recompute | peak RSS per rank (MB) | training-steps peak (MB) | of it before the model (MB) | weights + grads + moments per rank (MB) | ideal 16 B × P / N (MB) | estimate (MB) | s/step | elements to collectives per step (× P) | theory (× P) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  const runs: [number, 0 | 1 | 2 | 3, boolean][] = [
    [1, 0, false], [1, 3, true], [2, 0, false], [2, 1, false], [2, 2, false], [2, 3, true],
    [4, 0, false], [4, 1, false], [4, 2, false], [4, 2, true], [4, 3, true], [4, 3, false],
  ];
  const only = process.env.ZERO_BENCH_ONLY?.split(',');
  for (const [world, stage, recompute] of runs) {
    if (only && !only.includes(`${world}/${stage}${recompute ? 'r' : ''}`)) continue;
    const r = spawnSync('mpirun', ['-np', String(world), '--bind-to', 'none', '--oversubscribe', ...asRoot, process.execPath, '--import', 'tsx', 'bench/distributed/zero.ts', '--rank', String(stage), String(steps), ...(recompute ? ['recompute'] : [])], {
      encoding: 'utf8',
      env: { ...process.env, SFTKIT_THREADS: '1' },
    });
    if (r.status !== 0) throw new Error(`world ${world} stage ${stage} failed:\n${r.stderr}`);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Row);
    const peak = Math.max(...rows.map((x) => x.peak_rss));
    const trainPeak = Math.max(...rows.map((x) => x.train_peak_rss));
    const first = rows[0] as Row;
    const P = first.params;
    const sent = first.sent_per_step;
    const total = ((sent['allReduce'] ?? 0) + (sent['reduceScatter'] ?? 0) + (sent['allGather'] ?? 0)) / P;
    // Stage 0: one all-reduce of P; stages 1 and 2: a reduce-scatter of P and an all-gather of P; stage 3: an
    // all-gather of P for the forward, another for the backward, a reduce-scatter of P (world 1: none).
    const theory = world === 1 ? 0 : stage === 0 ? 1 : stage === 3 ? 3 : 2;
    const detail = Object.entries(sent).filter(([, v]) => v / P >= 0.005).map(([k, v]) => `${k} ${(v / P).toFixed(2)}`).join(', ') || 'none';
    console.log(`| ${world} | ${stage} | ${recompute ? 'yes' : 'no'} | ${mb(peak)} | ${mb(trainPeak)} | ${mb(first.runtime_rss)} | ${mb(first.state_bytes)} | ${mb((16 * P) / world)} | ${mb(first.estimate)} | ${first.seconds_per_step.toFixed(1)} | ${total.toFixed(2)} (${detail}) | ${theory} |`);
  }
}

const args = process.argv.slice(2);
if (args[0] === '--rank') rank(Number(args[1]) as 0 | 1 | 2 | 3, Number(args[2] ?? 2), args[3] === 'recompute');
else main(args[0] === '--steps' ? Number(args[1]) : 2);
