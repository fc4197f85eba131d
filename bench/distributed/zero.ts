// bench/distributed/zero: peak RSS per rank (VmHWM) of config L training steps at world size 1, 2 and 4 with
// ZeRO stages 0, 1 and 2, beside the model + gradient + optimizer bytes each rank holds and the ideal
// 16 bytes × params / N, and the elements each rank hands to collectives per step against the theory.
// Usage: node --import tsx bench/distributed/zero.ts [--steps N]          (runs mpirun; prints a Markdown table)
// Rank:  mpirun -np N node --import tsx bench/distributed/zero.ts --rank STAGE STEPS   (prints JSON per rank)
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { type ProcessGroup, initProcessGroup } from '../../src/distributed/index.ts';
import { type LlamaConfig, parseModelConfig } from '../../src/models/config.ts';
import { Llama } from '../../src/models/llama.ts';
import { noDecay } from '../../src/models/model.ts';
import { Rng } from '../../src/tensor/index.ts';
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

/** Counts the elements this rank passes to each collective (the payload, before the ring's (N-1)/N). */
function counting(pg: ProcessGroup): { pg: ProcessGroup; sent: Record<string, number> } {
  const sent: Record<string, number> = { allReduce: 0, reduceScatter: 0, allGather: 0 };
  const size = (x: unknown): number => ((x as { count?: number; size?: number }).count ?? (x as { size: number }).size);
  const wrapped = Object.create(pg) as ProcessGroup;
  wrapped.allReduce = (x, op) => { sent['allReduce'] = (sent['allReduce'] as number) + size(x); pg.allReduce(x, op); };
  wrapped.reduceScatter = (s, r, o) => { sent['reduceScatter'] = (sent['reduceScatter'] as number) + size(s); pg.reduceScatter(s, r, o); };
  wrapped.allGather = (x, c) => { sent['allGather'] = (sent['allGather'] as number) + (c ? c.reduce((a, b) => a + b, 0) : size(x)); pg.allGather(x, c); };
  return { pg: wrapped, sent };
}

function rank(stage: 0 | 1 | 2, steps: number): void {
  const c = (JSON.parse(readFileSync(new URL('../train/configs.json', import.meta.url), 'utf8')) as Record<string, Record<string, number>>)['L'] as Record<string, number>;
  const cfg = parseModelConfig(
    {
      model_type: 'llama', vocab_size: c['vocab'], hidden_size: c['dim'], intermediate_size: c['ffn'], num_hidden_layers: c['layers'],
      num_attention_heads: c['heads'], num_key_value_heads: c['heads'], max_position_embeddings: c['seq'], rms_norm_eps: 1e-5,
    },
    'L',
  ) as LlamaConfig;
  const real = initProcessGroup();
  const { pg, sent } = counting(real);
  const before = vmHwmBytes();
  const model = new Llama(cfg, { seed: 0, weights: { gradients: stage < 2 } });
  const adamw = { lr: 1e-4, weightDecay: 0.1, noDecay };
  const opt: TrainOptimizer = stage === 0 ? new ReplicatedAdamW(model.params, pg, adamw) : new ZeroAdamW(model.params, pg, adamw, stage);
  const rng = new Rng(1 + real.rank);
  const ids = Int32Array.from({ length: ROWS * SEQ }, () => rng.int(cfg.vocabSize));
  const targets = Int32Array.from({ length: ROWS * SEQ }, () => rng.int(cfg.vocabSize));
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    lossStep(model, { rows: ROWS, ids, targets }, { seqLength: SEQ, normaliser: ROWS * SEQ * real.size });
    opt.microBatchDone();
    opt.reduceGradients();
    opt.update(1e-4, clipScale(opt.gradNorm(), 1.0), () => false);
  }
  const seconds = (performance.now() - t0) / 1000 / steps;
  const P = model.params.values.layout.size;
  const N = real.size;
  // What this rank holds for the weights, their gradients and the moments.
  const bucket = opt instanceof ZeroAdamW && opt.sharded ? opt.sharded.peakBucketBytes : 0;
  const gradBytes = stage === 2 ? Math.ceil(P / N) * 4 + bucket : P * 4;
  const state = P * 4 + gradBytes + (stage >= 1 ? Math.ceil(P / N) * 8 : P * 8);
  const est = estimateTrainingMemory({ config: cfg, weights: model.params.counts(), batchSize: ROWS, seqLength: SEQ, recompute: false, worldSize: N, zeroStage: stage });
  const perStep = Object.fromEntries(Object.entries(sent).map(([k, v]) => [k, v / steps]));
  console.log(JSON.stringify({ rank: real.rank, world: N, stage, params: P, seconds_per_step: seconds, runtime_rss: before, peak_rss: vmHwmBytes(), state_bytes: state, bucket_bytes: bucket, estimate: est.total, sent_per_step: perStep }));
  opt.release();
  model.release();
}

interface Row { rank: number; world: number; stage: number; params: number; seconds_per_step: number; runtime_rss: number; peak_rss: number; state_bytes: number; bucket_bytes: number; estimate: number; sent_per_step: Record<string, number> }

function main(steps: number): void {
  exitIfMissing('bench/distributed/zero.ts', ['mpi']);
  const asRoot = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
  const mb = (b: number): string => (b / 2 ** 20).toFixed(0);
  console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores); config L (dim 768, 12 layers, vocab 32000), ${ROWS} row × ${SEQ} tokens per rank, 1 thread per rank, ${steps} steps, fp32 AdamW`);
  console.log('| world | stage | peak RSS per rank (MB) | of it before the model (MB) | weights + grads + moments per rank (MB) | ideal 16 B × P / N (MB) | estimate (MB) | elements to collectives per step (× P) | theory (× P) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [world, stage] of [[1, 0], [2, 0], [2, 1], [2, 2], [4, 0], [4, 1], [4, 2]] as const) {
    const r = spawnSync('mpirun', ['-np', String(world), '--bind-to', 'none', '--oversubscribe', ...asRoot, process.execPath, '--import', 'tsx', 'bench/distributed/zero.ts', '--rank', String(stage), String(steps)], {
      encoding: 'utf8',
      env: { ...process.env, SFTKIT_THREADS: '1' },
    });
    if (r.status !== 0) throw new Error(`world ${world} stage ${stage} failed:\n${r.stderr}`);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Row);
    const peak = Math.max(...rows.map((x) => x.peak_rss));
    const first = rows[0] as Row;
    const P = first.params;
    const sent = first.sent_per_step;
    const total = ((sent['allReduce'] ?? 0) + (sent['reduceScatter'] ?? 0) + (sent['allGather'] ?? 0)) / P;
    // Stage 0: one all-reduce of P; stages 1 and 2: a reduce-scatter of P and an all-gather of P (world 1: none).
    const theory = world === 1 ? 0 : stage === 0 ? 1 : 2;
    const detail = Object.entries(sent).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${(v / P).toFixed(2)}`).join(', ') || 'none';
    console.log(`| ${world} | ${stage} | ${mb(peak)} | ${mb(first.runtime_rss)} | ${mb(first.state_bytes)} | ${mb((16 * P) / world)} | ${mb(first.estimate)} | ${total.toFixed(2)} (${detail}) | ${theory} |`);
  }
}

const args = process.argv.slice(2);
if (args[0] === '--rank') rank(Number(args[1]) as 0 | 1 | 2, Number(args[2] ?? 2));
else main(args[0] === '--steps' ? Number(args[1]) : 2);
