// bench/train/big-model: the seed's Llama-2-7B shape on this machine (issue 16). It writes a random-initialised
// Llama-2-7B-shaped checkpoint (configs/llama2/llama2_7b.json: 32 layers, hidden 4096, FFN 11008, vocab 32000) as
// sharded bf16 safetensors, streamed a tensor at a time, plus random token records (seq 512); then, for each
// base dtype, runs `sftkit run` (LoRA r=16 on all linears, batch 1, recompute, bf16 compute) as a child process,
// polling its peak RSS (VmHWM), and times the load/quantize, each step, and the memory estimate it printed;
// then times generation (prefill + KV-cache decode) on the same base in a child. Everything written is deleted
// at the end (13 GB at 32 layers) unless --keep.
// Usage: node --import tsx bench/train/big-model.ts [--base bfloat16,nf4] [--steps 3] [--seq 512] [--layers 32]
//          [--rank 16] [--gen 16] [--dir DIR] [--keep] [--skip-train] [--skip-gen]
// Child: node --import tsx bench/train/big-model.ts --gen-child MODEL_DIR BASE_DTYPE PROMPT_TOKENS NEW_TOKENS
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, freemem, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { RecordsWriter } from '../../src/data/records.ts';
import { emptyReport } from '../../src/data/report.ts';
import type { WeightDtype } from '../../src/formats/dtypes.ts';
import { type TensorSpec, writeSafetensorsSharded } from '../../src/formats/safetensors-writer.ts';
import { KvCache } from '../../src/models/kv-cache.ts';
import { logits } from '../../src/models/model.ts';
import * as T from '../../src/tensor/index.ts';
import { Tensor, noGrad, scope } from '../../src/tensor/index.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { expectedTensors } from '../../src/models/tensor-table.ts';
import { loadModel } from '../../src/train/model-io.ts';
import { describeMachine, loadAverage } from '../lib/machine.ts';
import { median } from '../lib/stats.ts';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const SFTKIT = join(ROOT, 'bin', 'sftkit.js');
const GiB = 2 ** 30;

function vmStatus(pid: number | 'self'): { hwm: number; rss: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'))?.[1] ?? NaN) * 1024;
    return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
  } catch {
    return null;
  }
}

// ---- the checkpoint -------------------------------------------------------------------------------------

/** A pool of random bf16 values with std ≈ 0.02 (uniform ±0.0346), copied from at a random offset per tensor. */
function randomPool(n: number, seed: number): Uint16Array {
  const pool = new Uint16Array(n);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    f[0] = ((s / 4294967296) * 2 - 1) * 0.0346;
    pool[i] = (u[0] as number) >>> 16;
  }
  return pool;
}

interface Written {
  dir: string;
  bytes: number;
  seconds: number;
  params: number;
}

/** config.json (layers overridden) + bf16 safetensors shards of 5 GB, random linears and embeddings, norms at 1. */
function writeCheckpoint(dir: string, layers: number): Written {
  const t0 = performance.now();
  mkdirSync(dir, { recursive: true });
  const raw = JSON.parse(readFileSync(join(ROOT, 'configs', 'llama2', 'llama2_7b.json'), 'utf8')) as Record<string, unknown>;
  const cfgJson = { ...raw, num_hidden_layers: layers, torch_dtype: 'bfloat16' };
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(cfgJson, null, 2)}\n`);
  const config = parseModelConfig(cfgJson, 'llama2_7b.json');
  const specs: TensorSpec[] = expectedTensors(config)
    .filter((t) => t.optional === undefined)
    .map((t) => ({ name: t.name, dtype: 'BF16' as WeightDtype, shape: [...t.shape] }));
  const pool = randomPool(1 << 24, 7);
  let k = 0;
  const files = writeSafetensorsSharded(
    dir,
    specs,
    (spec) => {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const out = new Uint16Array(n);
      if (spec.shape.length === 1) {
        out.fill(0x3f80); // 1.0: RMSNorm weights
      } else {
        let at = 0;
        let from = (k++ * 7_919_111) % pool.length;
        while (at < n) {
          const take = Math.min(n - at, pool.length - from);
          out.set(pool.subarray(from, from + take), at);
          at += take;
          from = 0;
        }
      }
      return new Uint8Array(out.buffer);
    },
    { maxShardBytes: 5 * GiB },
  );
  const params = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
  return { dir, bytes: files.reduce((n, f) => n + f.bytes, 0), seconds: (performance.now() - t0) / 1000, params };
}

/** Random token records: `rows` rows of seq+1 ids; the first quarter of each row is a prompt (labels -100). */
function writeRecords(dir: string, rows: number, seq: number, vocab: number): void {
  mkdirSync(dir, { recursive: true });
  const w = new RecordsWriter(dir, { seqLength: seq, segments: false });
  let s = 12345;
  const next = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 3 + (s % (vocab - 3));
  };
  for (let r = 0; r < rows; r++) {
    const ids = Int32Array.from({ length: seq + 1 }, () => next());
    const labels = ids.map((x, i) => (i < seq / 4 ? -100 : x));
    w.push(ids, labels);
  }
  w.finish(
    { seq_length: seq, dataset_type: 'text', template: null, packed: false, pad_id: 0, ignore_id: -100, tokenizer: { identity: 'random-7b-bench', kind: 'sentencepiece', vocab_size: vocab, bos_id: 1, eos_id: 2 } },
    { ...emptyReport(), max_token_id: vocab - 1 },
  );
}

// ---- the training run ------------------------------------------------------------------------------------

interface TrainResult {
  base: string;
  loadSeconds: number;
  loadedRss: number;
  peakRss: number;
  estimate: number | null;
  stepSeconds: number[];
  losses: number[];
  exitCode: number | null;
  tail: string;
}

function runChild(args: string[], onLine: (line: string, at: number, pid: number) => void, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; code: number | null; peak: number; tail: string }> {
  return new Promise((done) => {
    const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, SFTKIT_FROM_SOURCE: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let peak = 0;
    let tail = '';
    const poll = setInterval(() => {
      const st = child.pid ? vmStatus(child.pid) : null;
      if (st && st.hwm > peak) peak = st.hwm;
    }, 200);
    let buf = '';
    const take = (chunk: Buffer): void => {
      buf += chunk.toString('utf8');
      tail = (tail + chunk.toString('utf8')).slice(-4000);
      const parts = buf.split(/[\n\r]/);
      buf = parts.pop() ?? '';
      for (const p of parts) if (p.trim()) onLine(p.replace(/\x1b\[[0-9;]*[A-Za-z]/g, ''), performance.now(), child.pid ?? 0);
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    child.on('exit', (code) => {
      clearInterval(poll);
      if (buf.trim()) onLine(buf, performance.now(), 0);
      done({ child, code, peak, tail });
    });
  });
}

async function train(base: string, work: string, steps: number, rank: number): Promise<TrainResult> {
  const out = join(work, `out-${base}`);
  const yaml = join(work, `run-${base}.yaml`);
  writeFileSync(
    yaml,
    [
      'seed: 0',
      `output_dir: ${out}`,
      'run_mode: finetune',
      `load_checkpoint: ${join(work, 'model')}`,
      `model: {dtype: bfloat16, base_dtype: ${base}, recompute: true}`,
      `train_dataset: {dataset_dir: ${join(work, 'records')}, shuffle: false, drop_remainder: true}`,
      `runner_config: {epochs: 1, batch_size: 1, max_steps: ${steps}, clip_grad_norm: 1.0}`,
      'optimizer: {type: AdamW, learning_rate: 2.0e-4, weight_decay: 0.0}',
      'lr_schedule: {type: constant, warmup_steps: 0}',
      `lora: {rank: ${rank}, alpha: ${2 * rank}, dropout: 0, target_modules: all-linear}`,
      'callbacks: {loss_monitor: {log_every: 1}, checkpoint: {save_checkpoint_steps: 100000}}',
      '',
    ].join('\n'),
  );
  const t0 = performance.now();
  let loadSeconds = NaN;
  let loadedRss = NaN;
  let estimate: number | null = null;
  let last = NaN;
  const stepSeconds: number[] = [];
  const losses: number[] = [];
  const run = runChild([SFTKIT, 'run', '--config', yaml], (line, at, pid) => {
    process.stdout.write(`  [${base}] ${line}\n`);
    const est = line.match(/estimated peak memory: ([\d.]+) GiB/);
    if (est) {
      estimate = Number(est[1]) * GiB;
      loadSeconds = (at - t0) / 1000;
      loadedRss = pid ? (vmStatus(pid)?.rss ?? NaN) : NaN;
      last = at;
    }
    const step = line.match(/step\s+(\d+)\/\d+.*?loss\s+([\d.]+)/);
    if (step && !Number.isNaN(last)) {
      stepSeconds.push((at - last) / 1000);
      losses.push(Number(step[2]));
      last = at;
    }
  });
  const r = await run;
  return { base, loadSeconds, loadedRss, peakRss: r.peak, estimate, stepSeconds, losses, exitCode: r.code, tail: r.tail };
}

// ---- generation ------------------------------------------------------------------------------------------

interface GenResult {
  base: string;
  loadSeconds: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  peakRss: number;
}

/** Greedy generation as generate() runs it (KV cache, last position's logits), timing the prefill and each decode step. */
function genChild(modelDir: string, base: string, promptTokens: number, newTokens: number): void {
  const t0 = performance.now();
  const model = loadModel(modelDir, 0, { weights: () => ({ frozen: () => true, frozenDtype: base as 'bfloat16' }) });
  const loadSeconds = (performance.now() - t0) / 1000;
  const cache = KvCache.forConfig(model.config, 1, promptTokens + newTokens);
  const step = (ids: number[], pos0: number): number =>
    noGrad(() =>
      scope(() => {
        const S = ids.length;
        const hidden = model.forward(Tensor.from(Int32Array.from(ids), [1, S], 'int32'), {
          positions: Int32Array.from({ length: S }, (_, i) => pos0 + i),
          segments: new Int32Array(S).fill(1),
          cache,
        });
        const row = logits(model, T.slice(hidden, 1, S - 1, S)).toArray() as Float32Array;
        let best = 0;
        for (let v = 1; v < row.length; v++) if ((row[v] as number) > (row[best] as number)) best = v;
        return best;
      }),
    );
  const prompt = Array.from({ length: promptTokens }, (_, i) => 3 + ((i * 7919) % 31000));
  const t1 = performance.now();
  let next = step(prompt, 0);
  const prefill = (performance.now() - t1) / 1000;
  const times: number[] = [];
  for (let k = 0; k < newTokens; k++) {
    const t = performance.now();
    next = step([next], promptTokens + k);
    times.push((performance.now() - t) / 1000);
  }
  cache.release();
  console.log(JSON.stringify({ base, loadSeconds, prefillTokensPerSecond: promptTokens / prefill, decodeTokensPerSecond: 1 / median(times), peakRss: vmStatus('self')?.hwm ?? NaN }));
}

async function generation(base: string, modelDir: string, promptTokens: number, newTokens: number): Promise<GenResult | null> {
  let json: GenResult | null = null;
  const r = await runChild(['--import', 'tsx', new URL(import.meta.url).pathname, '--gen-child', modelDir, base, String(promptTokens), String(newTokens)], (line) => {
    if (line.startsWith('{')) json = JSON.parse(line) as GenResult;
    else process.stdout.write(`  [gen ${base}] ${line}\n`);
  });
  if (!json) process.stdout.write(`  [gen ${base}] exit ${r.code}: ${r.tail}\n`);
  return json;
}

// ---- main ------------------------------------------------------------------------------------------------

function flag(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : fallback;
}

const gb = (b: number): string => (Number.isFinite(b) ? (b / GiB).toFixed(2) : '—');

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--gen-child') {
    genChild(args[1] as string, args[2] as string, Number(args[3]), Number(args[4]));
    return;
  }
  const bases = flag(args, '--base', 'bfloat16,nf4').split(',');
  const steps = Number(flag(args, '--steps', '3'));
  const seq = Number(flag(args, '--seq', '512'));
  const layers = Number(flag(args, '--layers', '32'));
  const rank = Number(flag(args, '--rank', '16'));
  const genTokens = Number(flag(args, '--gen', '16'));
  const keep = args.includes('--keep');
  const given = flag(args, '--dir', '');
  const work = given ? resolve(given) : mkdtempSync(join(ROOT, '.bench-7b-'));
  const m = describeMachine();
  console.log(`# 7B-shaped LoRA (issue 16): ${m.identity.label} (${m.flags}), ${cpus().length} cores, ${(totalmem() / GiB).toFixed(1)} GiB (free ${(freemem() / GiB).toFixed(1)}), load ${loadAverage()}`);
  try {
    const modelDir = join(work, 'model');
    if (!existsSync(join(modelDir, 'config.json'))) {
      const w = writeCheckpoint(modelDir, layers);
      console.log(`checkpoint: ${w.params.toLocaleString('en-US')} parameters, ${gb(w.bytes)} GiB bf16, written in ${w.seconds.toFixed(1)} s (${modelDir})`);
    }
    if (!existsSync(join(work, 'records', 'manifest.json'))) writeRecords(join(work, 'records'), steps, seq, 32000);
    const trains: TrainResult[] = [];
    const gens: GenResult[] = [];
    for (const base of bases) {
      if (!args.includes('--skip-train')) {
        const t = await train(base, work, steps, rank);
        trains.push(t);
        rmSync(join(work, `out-${base}`), { recursive: true, force: true });
        if (t.exitCode !== 0) console.log(`run with base ${base} exited ${t.exitCode}:\n${t.tail}`);
      }
      if (!args.includes('--skip-gen')) {
        const g = await generation(base, modelDir, 128, genTokens);
        if (g) gens.push(g);
      }
    }
    console.log(`\nload ${loadAverage()}; seq ${seq}, batch 1, recompute, LoRA r=${rank} (alpha ${2 * rank}, dropout 0) on all linears, bf16 compute, ${layers} layers`);
    if (trains.length > 0) {
      console.log('\n| base dtype | load + quantize s | RSS after load GiB | peak RSS GiB | estimate GiB | estimate / peak | s/step (median) | tokens/s | losses |');
      console.log('|---|---:|---:|---:|---:|---:|---:|---:|---|');
      for (const t of trains) {
        const s = t.stepSeconds.length > 1 ? median(t.stepSeconds.slice(1)) : (t.stepSeconds[0] ?? NaN);
        console.log(`| ${t.base} | ${t.loadSeconds.toFixed(1)} | ${gb(t.loadedRss)} | ${gb(t.peakRss)} | ${t.estimate === null ? '—' : gb(t.estimate)} | ${t.estimate === null ? '—' : (t.estimate / t.peakRss).toFixed(2)} | ${s.toFixed(1)} | ${(seq / s).toFixed(1)} | ${t.losses.map((l) => l.toFixed(3)).join(', ')} |`);
      }
    }
    if (gens.length > 0) {
      console.log('\n| base dtype | load s | prefill 128 tokens/s | decode tokens/s (median step) | peak RSS GiB |');
      console.log('|---|---:|---:|---:|---:|');
      for (const g of gens) console.log(`| ${g.base} | ${g.loadSeconds.toFixed(1)} | ${g.prefillTokensPerSecond.toFixed(1)} | ${g.decodeTokensPerSecond.toFixed(2)} | ${gb(g.peakRss)} |`);
    }
  } finally {
    if (!keep) rmSync(work, { recursive: true, force: true });
    else console.log(`kept ${work} (${existsSync(work) ? 'delete it when done' : ''})`);
  }
}

await main();
