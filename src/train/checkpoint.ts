// Training checkpoints (DESIGN.md's layout contract): output/checkpoint/<prefix>-<epoch>_<step>/ holds a
// model checkpoint plus trainer_state.json, optimizer/rank_<r>.safetensors and rank_<r>.json; meta.json
// names the latest and is written last. Every directory is built in a temp dir and renamed; a corrupt
// latest falls back to the previous checkpoint.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';
import type { ProcessGroup } from '../distributed/index.ts';
import { MANIFEST_FILE, readJsonFile, readManifest, sha256File, writeManifest } from '../formats/checkpoint-dir.ts';
import type { CausalLM } from '../models/model.ts';
import type { RngState } from '../tensor/index.ts';
import type { TrainOptimizer } from './optimizer.ts';
import { writeModelFiles } from './model-io.ts';

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const META_FILE = 'meta.json';

export interface TrainerState {
  epoch: number;
  /** Optimizer steps done. */
  step: number;
  consumed_samples: number;
  lr_schedule: { type: string; total_steps: number; warmup_steps: number; lr: number; lr_end: number };
  loss_scale: number;
  world_size: number;
  /** sha256 of each optimizer shard, by file name under optimizer/. */
  optimizer_files: Record<string, string>;
  /** The run config as it was. */
  config: unknown;
}

export interface RankState {
  rank: number;
  rng: RngState;
  /** The data loader's global cursor (opaque to the checkpoint code). */
  loader: unknown;
}

export interface Meta {
  latest: string;
  checkpoints: string[];
}

export function checkpointName(prefix: string, epoch: number, step: number): string {
  return `${prefix}-${epoch}_${step}`;
}

function readMeta(root: string): Meta | null {
  const path = join(root, META_FILE);
  if (!existsSync(path)) return null;
  const m = readJsonFile(path) as Partial<Meta>;
  if (typeof m.latest !== 'string' || !Array.isArray(m.checkpoints)) throw new FormatError(`${path}: expected {"latest", "checkpoints"}`, { where: path });
  return { latest: m.latest, checkpoints: m.checkpoints.filter((c): c is string => typeof c === 'string') };
}

function writeMeta(root: string, meta: Meta): void {
  const tmp = join(root, `.${META_FILE}.tmp-${process.pid}`);
  writeFileSync(tmp, `${JSON.stringify(meta, null, 2)}\n`);
  renameSync(tmp, join(root, META_FILE));
}

export interface SaveOptions {
  root: string;
  name: string;
  model: CausalLM;
  optimizer: TrainOptimizer;
  state: Omit<TrainerState, 'optimizer_files'>;
  /** This rank's state. */
  rank: RankState;
  assetsDir: string | null;
  keepMax: number;
  pg: ProcessGroup;
}

function fsyncPath(path: string): void {
  try {
    const fd = openSync(path, 'r');
    fsyncSync(fd);
    closeSync(fd);
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic.
  }
}

/**
 * Writes one training checkpoint with every rank: rank 0 prepares a temp directory, each rank writes its
 * optimizer shard and rank file into it, rank 0 adds the weights, trainer_state.json and sftkit.json, renames
 * it into place, then writes meta.json and prunes beyond keep_checkpoint_max. Returns the directory.
 */
export async function saveCheckpoint(o: SaveOptions): Promise<string> {
  const { pg } = o;
  const dir = join(o.root, o.name);
  const tmp = join(o.root, `.${o.name}.tmp`);
  if (pg.rank === 0) {
    mkdirSync(o.root, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'optimizer'), { recursive: true });
  }
  pg.barrier();
  o.optimizer.save(join(tmp, 'optimizer'));
  writeFileSync(join(tmp, `rank_${o.rank.rank}.json`), `${JSON.stringify(o.rank, null, 2)}\n`);
  pg.barrier();
  if (pg.rank === 0) {
    try {
      const files = writeModelFiles(tmp, o.model, { assetsDir: o.assetsDir });
      const optimizerFiles: Record<string, string> = {};
      for (const f of readdirSync(join(tmp, 'optimizer')).sort()) optimizerFiles[f] = sha256File(join(tmp, 'optimizer', f));
      const state: TrainerState = { ...o.state, optimizer_files: optimizerFiles };
      writeFileSync(join(tmp, TRAINER_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
      writeManifest(tmp, { model_type: o.model.config.modelType, dtype: 'float32', source: { path: o.name, format: 'sftkit-training' } }, files);
      fsyncPath(join(tmp, 'optimizer'));
      fsyncPath(tmp);
      if (existsSync(dir)) rmSync(dir, { recursive: true }); // the same step saved again (e.g. SIGINT right after a save)
      renameSync(tmp, dir);
      fsyncPath(o.root);
      const meta = readMetaSafe(o.root) ?? { latest: o.name, checkpoints: [] };
      const checkpoints = [...meta.checkpoints.filter((c) => c !== o.name && existsSync(join(o.root, c))), o.name];
      const keep = checkpoints.slice(Math.max(0, checkpoints.length - o.keepMax));
      writeMeta(o.root, { latest: o.name, checkpoints: keep });
      for (const old of checkpoints.slice(0, checkpoints.length - keep.length)) rmSync(join(o.root, old), { recursive: true, force: true });
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }
  pg.barrier();
  return dir;
}

function readMetaSafe(root: string): Meta | null {
  try {
    return readMeta(root);
  } catch {
    return null;
  }
}

export interface LoadedCheckpoint {
  dir: string;
  name: string;
  state: TrainerState;
  ranks: RankState[];
}

/** Verifies a training checkpoint's files against its sftkit.json and trainer_state.json hashes. */
export function verifyCheckpoint(dir: string): LoadedCheckpoint {
  const manifest = readManifest(dir);
  for (const [file, sha] of Object.entries(manifest.files)) {
    const path = join(dir, file);
    if (!existsSync(path)) throw new FormatError(`${path}: missing (listed in ${MANIFEST_FILE})`, { where: path });
    if (sha256File(path) !== sha) throw new FormatError(`${path}: content does not match its sha256 in ${MANIFEST_FILE}`, { where: path });
  }
  const statePath = join(dir, TRAINER_STATE_FILE);
  if (!existsSync(statePath)) throw new FormatError(`${dir}: not a training checkpoint (no ${TRAINER_STATE_FILE})`, { where: dir });
  const state = readJsonFile(statePath) as unknown as TrainerState;
  for (const [file, sha] of Object.entries(state.optimizer_files ?? {})) {
    const path = join(dir, 'optimizer', file);
    if (!existsSync(path) || sha256File(path) !== sha) throw new FormatError(`${path}: missing or corrupt optimizer shard`, { where: path });
  }
  const ranks = readdirSync(dir)
    .filter((f) => /^rank_\d+\.json$/.test(f))
    .map((f) => readJsonFile(join(dir, f)) as unknown as RankState)
    .sort((a, b) => a.rank - b.rank);
  const name = dir.split('/').filter(Boolean).pop() as string;
  return { dir, name, state, ranks };
}

/**
 * The checkpoint to resume from under `root`: `name` when given, else meta.json's latest; a corrupt one
 * falls back to the previous checkpoint (warn is told why).
 */
export function findResumeCheckpoint(root: string, name: string | null, warn: (msg: string) => void): LoadedCheckpoint {
  if (name) return verifyCheckpoint(join(root, name));
  const meta = readMetaSafe(root);
  const candidates = meta
    ? [...meta.checkpoints].reverse()
    : existsSync(root)
      ? readdirSync(root).filter((d) => existsSync(join(root, d, TRAINER_STATE_FILE))).sort().reverse()
      : [];
  if (meta && !candidates.includes(meta.latest)) candidates.unshift(meta.latest);
  for (const c of candidates) {
    try {
      return verifyCheckpoint(join(root, c));
    } catch (err) {
      warn(`checkpoint ${c} is unusable (${(err as Error).message}); trying the previous one`);
    }
  }
  throw new FormatError(`${root}: no usable training checkpoint to resume from`, { where: root, hint: 'start without --resume_training' });
}
