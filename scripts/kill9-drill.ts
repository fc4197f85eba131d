// The kill -9 drill (docs/RELIABILITY.md): kills a small `sftkit run` with SIGKILL again and again, about half
// of the kills inside checkpoint saves, resumes after each, and checks that every step any run logged matches
// an uninterrupted run bit for bit and that nothing stray is left in the checkpoint folder once the next run
// has started. CPU-light (a 0.6M-parameter Llama, one thread).
//   node --import tsx scripts/kill9-drill.ts [--kills 24] [--seed 1] [--steps 400] [--report FILE] [--keep]
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Rng } from '../src/tensor/index.ts';
import { parseCheckpointName } from '../src/train/checkpoint.ts';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'sftkit.js');
// Run the sources of this checkout, never a possibly stale dist/.
const env = { ...process.env, SFTKIT_FROM_SOURCE: '1', SFTKIT_THREADS: '1' };

const { values: flags } = parseArgs({
  options: {
    kills: { type: 'string', default: '24' },
    seed: { type: 'string', default: '1' },
    steps: { type: 'string', default: '400' },
    report: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const KILLS = Number(flags.kills);
const STEPS = Number(flags.steps);
const SAVE_EVERY = 5;
const rng = new Rng(Number(flags.seed));
const uniform = (lo: number, hi: number): number => lo + (hi - lo) * rng.uniform();

/**
 * Where a kill is aimed: inside a save while it writes (soon after its temp folder appears) or as it commits
 * (the moment the folder is renamed into place: then meta.json and pruning follow), mid-training, or at
 * start-up. All but the last wait for the run's first committed checkpoint, so every such run makes progress.
 */
type KillKind = 'save-write' | 'save-commit' | 'training' | 'startup';

interface KillRecord {
  kind: KillKind;
  /** Milliseconds after the trigger (temp folder, rename into place, first commit, spawn) the SIGKILL was sent. */
  delayMs: number;
  /** The last step the killed run logged (0: none). */
  lastStep: number;
  /** What this kill left in the checkpoint folder that a finished save would not have (not what an earlier kill left). */
  debris: string[];
}

/** One start of `sftkit run` and what was seen of it. */
interface SegmentRecord {
  kill: KillRecord | null;
  /** Whether the run got as far as its first step, where the folder was checked for strays. */
  checked: boolean;
  /** Entries from earlier runs still there at the first step (must be none). */
  stray: string[];
  /** The check found this run's own next save already under way (entries past the resumed step). */
  raced: boolean;
  /** Leftovers its start-of-run sweep reported removing. */
  swept: string[];
}

interface Segment {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
}

const work = mkdtempSync(join(tmpdir(), 'sftkit-kill9-'));
const failures: string[] = [];
/** The run under way, ended with the drill if the drill itself is interrupted. */
let current: ChildProcess | null = null;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    current?.kill('SIGKILL');
    if (!flags.keep) rmSync(work, { recursive: true, force: true });
    process.exit(130);
  });
}

function sftkitSync(args: string[]): void {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sftkit ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
}

function runArgs(out: string, resume: boolean): string[] {
  return [
    bin, 'run', '--config', 'configs/tiny/pretrain_llama_tiny.yaml', '--model.arch', join(work, 'arch.json'),
    '--train_dataset_dir', join(work, 'records'), '--output_dir', out, '--batch_size', '2',
    '--runner_config.max_steps', String(STEPS), '--callbacks.checkpoint.save_checkpoint_steps', String(SAVE_EVERY),
    '--callbacks.checkpoint.keep_checkpoint_max', '2', '--callbacks.loss_monitor.log_every', '1',
    ...(resume ? ['--resume_training'] : []),
  ];
}

interface Meta {
  latest: string;
  checkpoints: string[];
}

function readMeta(ckRoot: string): Meta | null {
  try {
    return JSON.parse(readFileSync(join(ckRoot, 'meta.json'), 'utf8')) as Meta;
  } catch {
    return null;
  }
}

function isComplete(ckRoot: string, name: string): boolean {
  return parseCheckpointName(name) !== null && existsSync(join(ckRoot, name, 'trainer_state.json')) && existsSync(join(ckRoot, name, 'sftkit.json'));
}

/**
 * Entries that a committed state does not explain: anything but meta.json and the checkpoints it lists (with
 * no meta.json, complete checkpoints are what resume falls back to, so they are explained too).
 */
function unexplained(ckRoot: string): string[] {
  if (!existsSync(ckRoot)) return [];
  const meta = readMeta(ckRoot);
  return readdirSync(ckRoot)
    .sort()
    .filter((e) => e !== 'meta.json' && !(meta ? meta.checkpoints.includes(e) || meta.latest === e : isComplete(ckRoot, e)));
}

function canResume(ckRoot: string): boolean {
  return existsSync(ckRoot) && (readMeta(ckRoot) !== null || readdirSync(ckRoot).some((e) => isComplete(ckRoot, e)));
}

/** The step of a checkpoint-folder entry (hidden temp and pruned names too), or -1. */
function stepOf(entry: string): number {
  const name = entry.replace(/^\./, '').replace(/\.(tmp|pruned)$/, '');
  return parseCheckpointName(name)?.step ?? -1;
}

/**
 * Runs one segment: starts `sftkit run` (resuming when a checkpoint exists); once its first step is logged,
 * freezes it (SIGSTOP) to check the checkpoint folder for strays, then lets it go on; kills it as `kind` says,
 * or lets it finish when kind is null.
 */
async function segment(out: string, kind: KillKind | null, saveMs: number): Promise<{ run: Segment; record: SegmentRecord }> {
  const ckRoot = join(out, 'checkpoint');
  mkdirSync(ckRoot, { recursive: true });
  const resume = canResume(ckRoot);
  // Leftovers of an earlier kill that this run may not get to sweep (a kill at start-up) are not this kill's.
  const before = new Set(unexplained(ckRoot));
  const child = spawn(process.execPath, runArgs(out, resume), { cwd: root, env });
  current = child;
  const pid = child.pid as number;
  let stdout = '';
  let pending = '';
  let lastStep = 0;
  let firstStepSeen = false;
  let committed = false;
  let resumedStep = 0;
  let stray: string[] = [];
  let raced = false;
  let killed: { kind: KillKind; delayMs: number } | null = null;
  const timers: NodeJS.Timeout[] = [];
  let watcher: ReturnType<typeof watch> | null = null;
  const sigkill = (k: KillKind, delayMs: number): void => {
    if (killed !== null || child.exitCode !== null) return;
    killed = { kind: k, delayMs };
    process.kill(pid, 'SIGKILL');
  };
  const after = (ms: number, fn: () => void): void => {
    timers.push(setTimeout(fn, ms));
  };
  if (kind === 'startup') {
    const ms = uniform(0, 2500);
    after(ms, () => sigkill('startup', ms));
  }
  const onFirstStep = (): void => {
    // The sweep has run (it precedes the first step): nothing from earlier runs may remain.
    process.kill(pid, 'SIGSTOP');
    const left = unexplained(ckRoot);
    // Entries of this run's own next save (a step past the one it resumed from) mean the check came late.
    const ownSave = (e: string): boolean => stepOf(e) > resumedStep || e === `.meta.json.tmp-${pid}`;
    raced = left.some(ownSave);
    stray = left.filter((e) => !ownSave(e));
    process.kill(pid, 'SIGCONT');
  };
  const onFirstCommit = (): void => {
    if (kind === 'training') {
      const ms = uniform(0, 600);
      after(ms, () => sigkill('training', ms));
    } else if (kind === 'save-write' || kind === 'save-commit') {
      const existing = new Set(readdirSync(ckRoot));
      watcher = watch(ckRoot, (_event, file) => {
        if (typeof file !== 'string' || existing.has(file) || !existsSync(join(ckRoot, file))) return;
        const temp = /^\..+\.tmp$/.test(file);
        const renamedIn = parseCheckpointName(file) !== null;
        if (kind === 'save-write' && temp) {
          watcher?.close();
          // The first half of a typical save is mostly the writing of weights and moments.
          const ms = uniform(0, 0.5 * saveMs);
          after(ms, () => sigkill(kind, ms));
        } else if (kind === 'save-commit' && renamedIn) {
          watcher?.close();
          sigkill(kind, 0);
        }
      });
      // Should no save start (it always does within SAVE_EVERY steps), kill anyway.
      after(20_000, () => sigkill(kind, 20_000));
    }
  };
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() as string;
    for (const line of lines) {
      const resumed = /^resuming from .* \(step (\d+)\)$/.exec(line);
      if (resumed) resumedStep = Number(resumed[1]);
      if (!committed && line.startsWith('checkpoint: ')) {
        committed = true;
        onFirstCommit();
      }
      const step = /^step\s+(\d+)\//.exec(line);
      if (!step) continue;
      lastStep = Number(step[1]);
      if (!firstStepSeen) {
        firstStepSeen = true;
        onFirstStep();
      }
    }
  });
  const run = await new Promise<Segment>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout })));
  for (const t of timers) clearTimeout(t);
  (watcher as ReturnType<typeof watch> | null)?.close();
  const swept = [...stdout.matchAll(/^checkpoint housekeeping: removed (\S+):/gm)].map((m) => (m[1] as string).split('/').pop() as string);
  const k = killed as { kind: KillKind; delayMs: number } | null;
  const inherited = (e: string): boolean => before.has(e) && !swept.includes(e);
  const kill: KillRecord | null = k === null ? null : { ...k, lastStep, debris: unexplained(ckRoot).filter((e) => !inherited(e)) };
  return { run, record: { kill, checked: firstStepSeen, stray, raced, swept } };
}

interface MetricLine {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
}

function metricLines(out: string): MetricLine[] {
  if (!existsSync(join(out, 'metrics.jsonl'))) return [];
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as MetricLine);
}

function weightsHash(checkpoint: string): string {
  return (JSON.parse(readFileSync(join(checkpoint, 'sftkit.json'), 'utf8')) as { files: Record<string, string> }).files['model.safetensors'] as string;
}

/** Median time from a save's temp folder to its meta.json, watched during the reference run. */
function watchSaves(ckRoot: string): { stop: () => number } {
  const started = new Map<string, number>();
  const spans: number[] = [];
  mkdirSync(ckRoot, { recursive: true });
  const w = watch(ckRoot, (_event, file) => {
    if (typeof file !== 'string') return;
    if (/^\..+\.tmp$/.test(file) && !started.has(file)) started.set(file, performance.now());
    else if (file === 'meta.json') {
      for (const [name, t] of started) {
        spans.push(performance.now() - t);
        started.delete(name);
      }
    }
  });
  return {
    stop: () => {
      w.close();
      spans.sort((a, b) => a - b);
      return spans[Math.floor(spans.length / 2)] ?? 30;
    },
  };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const text = Array.from({ length: 120 }, (_, i) => `The people of the year ${1800 + i} asked the Congress for roads, schools, courts and peace.`).join('\n\n');
  writeFileSync(join(work, 'corpus.txt'), text);
  sftkitSync(['data', 'preprocess', '--dataset_type', 'text', '--input_glob', join(work, 'corpus.txt'), '--model_file', 'test/fixtures/tokenizer/bpe.model', '--seq_length', '32', '--output_file', join(work, 'records')]);
  writeFileSync(join(work, 'arch.json'), JSON.stringify({
    model_type: 'llama', vocab_size: 4096, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
  }));

  // The uninterrupted reference, and how long a save takes (kills aimed at saves land within that).
  const ref = join(work, 'ref');
  const saves = watchSaves(join(ref, 'checkpoint'));
  const refRun = await segment(ref, null, 0);
  const saveMs = saves.stop();
  if (refRun.run.code !== 0) throw new Error(`the reference run failed:\n${refRun.run.stdout}`);
  const reference = new Map(metricLines(ref).map((m) => [m.step, m]));
  console.log(`reference: ${reference.size} steps; a save takes ~${saveMs.toFixed(0)} ms`);

  const out = join(work, 'drill');
  const segments: SegmentRecord[] = [];
  const plan: KillKind[] = Array.from({ length: KILLS }, (_, i) => {
    if (i % 2 === 0) return i % 4 === 0 ? 'save-write' : 'save-commit';
    return i % 6 === 5 ? 'startup' : 'training';
  });
  for (const kind of plan) {
    const seg = await segment(out, kind, saveMs);
    segments.push(seg.record);
    const k = seg.record.kill;
    if (k === null) {
      if (seg.run.code === 0) throw new Error(`the run finished before kill ${segments.length}: raise --steps`);
      failures.push(`run ${segments.length} ended by itself with code ${seg.run.code}:\n${seg.run.stdout.slice(-2000)}`);
      break;
    }
    console.log(`kill ${String(segments.length).padStart(2)}: ${k.kind.padEnd(11)} +${k.delayMs.toFixed(0).padStart(5)} ms, after step ${String(k.lastStep).padStart(3)}; left ${k.debris.length ? k.debris.join(' ') : 'nothing'}`);
  }
  const final = await segment(out, null, 0);
  segments.push(final.record);
  if (final.run.code !== 0) failures.push(`the final run failed with code ${final.run.code}:\n${final.run.stdout.slice(-2000)}`);
  const kills = segments.flatMap((g) => (g.kill ? [g.kill] : []));

  // Every step any run logged, killed or not, equals the uninterrupted run's.
  const lines = metricLines(out);
  let mismatched = 0;
  for (const m of lines) {
    const r = reference.get(m.step);
    if (!r || r.loss !== m.loss || r.lr !== m.lr || r.grad_norm !== m.grad_norm) {
      mismatched++;
      if (mismatched <= 5) failures.push(`step ${m.step}: loss ${m.loss} grad_norm ${m.grad_norm}, the reference has ${r?.loss} ${r?.grad_norm}`);
    }
  }
  const covered = new Set(lines.map((m) => m.step));
  if (covered.size !== reference.size) failures.push(`the drill's runs logged ${covered.size} distinct steps, the reference ${reference.size}`);
  const refRoot = join(ref, 'checkpoint');
  const outRoot = join(out, 'checkpoint');
  const refNames = readdirSync(refRoot).sort();
  const outNames = readdirSync(outRoot).sort();
  if (JSON.stringify(refNames) !== JSON.stringify(outNames)) failures.push(`final checkpoint folder ${outNames.join(' ')}, the reference has ${refNames.join(' ')}`);
  const latest = refNames.filter((n) => n !== 'meta.json').pop() as string;
  const sameWeights = existsSync(join(outRoot, latest)) && weightsHash(join(outRoot, latest)) === weightsHash(join(refRoot, latest));
  if (!sameWeights) failures.push(`the final weights differ from the reference (${latest})`);
  for (const [i, g] of segments.entries()) {
    if (g.stray.length > 0) failures.push(`run ${i + 1}: left by earlier runs at its first step: ${g.stray.join(' ')}`);
    // Whatever a kill left, a later run's sweep must have removed it with a log line.
    const sweptLater = new Set(segments.slice(i + 1).flatMap((later) => later.swept));
    const unswept = (g.kill?.debris ?? []).filter((d) => !sweptLater.has(d));
    if (unswept.length > 0) failures.push(`kill ${i + 1}: no later run reported removing ${unswept.join(' ')}`);
  }

  const summary = {
    kills: kills.length,
    aimed: Object.fromEntries((['save-write', 'save-commit', 'training', 'startup'] as const).map((kind) => [kind, kills.filter((k) => k.kind === kind).length])),
    insideSaves: kills.filter((k) => k.debris.length > 0).length,
    leftovers: kills.reduce((n, k) => n + k.debris.length, 0),
    sweptLeftovers: segments.reduce((n, g) => n + g.swept.length, 0),
    restartsChecked: segments.slice(1).filter((g) => g.checked).length,
    strayAfterRestart: segments.reduce((n, g) => n + g.stray.length, 0),
    racedChecks: segments.filter((g) => g.raced).length,
    stepsLogged: lines.length,
    mismatchedSteps: mismatched,
    finalWeightsIdentical: sameWeights,
    saveMs: Math.round(saveMs),
    seconds: Math.round((performance.now() - t0) / 1000),
    seed: Number(flags.seed),
  };
  console.log(JSON.stringify(summary, null, 2));
  if (flags.report) writeFileSync(flags.report, `${JSON.stringify({ summary, segments, failures }, null, 2)}\n`);
  if (failures.length > 0) {
    console.error(`kill -9 drill FAILED:\n${failures.join('\n')}`);
    process.exitCode = 1;
  } else {
    console.log(`kill -9 drill passed: ${summary.kills} kills, ${summary.insideSaves} inside saves; every logged step bit-identical; nothing stray after a restart`);
  }
}

try {
  await main();
} finally {
  if (flags.keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
