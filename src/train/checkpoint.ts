// Training checkpoints (DESIGN.md's layout contract): output/checkpoint/<prefix>-<epoch>_<step>/ holds a
// model checkpoint plus trainer_state.json, optimizer/rank_<r>.safetensors and rank_<r>.json; meta.json
// names the latest and is written last. Every directory is built in a temp dir and renamed; old ones are
// renamed out of sight before they are deleted; a corrupt latest falls back to the previous checkpoint.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { FormatError, SftkitError } from '../errors.ts';
import type { ProcessGroup } from '../distributed/index.ts';
import { type BaseModelRef, MANIFEST_FILE, readJsonFile, readManifest, sha256File, writeManifest } from '../formats/checkpoint-dir.ts';
import { writeFileAtomicSync } from '../formats/write-file.ts';
import type { CausalLM } from '../models/model.ts';
import type { TrainOptimizer } from './optimizer.ts';
import { sourceDtypeOf, writeAssetFiles, writeModelFiles } from './model-io.ts';
import type { WrittenFile } from '../formats/safetensors-writer.ts';
import { writeAdapterFiles } from './lora-io.ts';

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const META_FILE = 'meta.json';
/** A checkpoint is built in `.<name>.tmp/` and an old one is renamed to `.<name>.pruned/` before deletion. */
const TEMP_SUFFIX = '.tmp';
const PRUNED_SUFFIX = '.pruned';
const META_TEMP_PREFIX = `.${META_FILE}.tmp-`;

/** A training checkpoint file that breaks the checkpoint contract: names the file and, when known, the field. */
export class CheckpointError extends FormatError {
  readonly file: string;
  readonly field: string | null;
  constructor(file: string, field: string | null, problem: string, hint?: string) {
    super(`${file}: ${field === null ? '' : `field "${field}" `}${problem}`, { where: file, ...(hint === undefined ? {} : { hint }) });
    this.file = file;
    this.field = field;
  }
}

const count = z.int().nonnegative();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex sha256');
/** File names recorded in trainer_state.json stay inside the checkpoint: no separators, no dot-names. */
const fileName = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, 'expected a plain file name');

const trainerStateSchema = z.object({
  epoch: count,
  step: count,
  consumed_samples: count,
  lr_schedule: z.object({
    type: z.enum(['constant', 'linear', 'cosine']),
    total_steps: z.int().positive(),
    warmup_steps: count,
    lr: z.number(),
    lr_end: z.number(),
  }),
  loss_scale: z.number().positive(),
  world_size: z.int().positive(),
  optimizer_files: z.record(fileName, sha256),
  config: z.unknown(),
  // The best checkpoint so far by callbacks.early_stopping's metric and the evals since it (resume goes on from here).
  early_stopping: z.object({ best_value: z.number().nullable(), best_step: count, best_checkpoint: z.string().nullable(), bad_evals: count }).optional(),
});

const uint32 = z.int().min(0).max(0xffffffff);
const rngStateSchema = z.object({
  // xoshiro128** never leaves the all-zero state, so such a state was not written by us.
  s: z.tuple([uint32, uint32, uint32, uint32]).refine((s) => s.some((x) => x !== 0), 'the RNG state is all zeros'),
  spare: z.number().nullable(),
});
const rankStateSchema = z.object({
  rank: count,
  rng: rngStateSchema,
  // A LoRA run's RNG of the adapters' dropout masks, so that a resumed run draws the masks the uninterrupted one would.
  lora_rng: rngStateSchema.optional(),
  loader: z.unknown(),
});

// `best`: the checkpoint callbacks.early_stopping keeps (never pruned by keep_checkpoint_max).
const metaSchema = z.object({ latest: z.string(), checkpoints: z.array(z.string()), best: z.string().optional() });

export type TrainerState = z.infer<typeof trainerStateSchema>;
export type RankState = z.infer<typeof rankStateSchema>;
export type Meta = z.infer<typeof metaSchema>;

/** A short, safe rendering of an untrusted JSON value for an error message (never the whole value). */
function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (v === undefined) return 'nothing';
  return Array.isArray(v) ? 'an array' : 'an object';
}

function valueAt(json: unknown, path: readonly PropertyKey[]): unknown {
  let at = json;
  for (const key of path) {
    if (typeof at !== 'object' || at === null) return undefined;
    at = (at as Record<PropertyKey, unknown>)[key];
  }
  return at;
}

/** Reads a JSON file and checks it against `schema`; the first problem becomes a CheckpointError naming the field. */
function readValidated<T>(path: string, schema: z.ZodType<T>): T {
  const json = readJsonFile(path);
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue?.path ?? [];
  const fieldOf = (keys: readonly PropertyKey[]): string | null => (keys.length === 0 ? null : keys.map(String).join('.'));
  if (issue?.code === 'invalid_key') {
    // A bad key of a record (a file name): name the record and the key, not the key's value.
    const key = String(where[where.length - 1]);
    throw new CheckpointError(path, fieldOf(where.slice(0, -1)), `has a key ${describeValue(key)}: ${issue.issues[0]?.message ?? 'not allowed'}`);
  }
  throw new CheckpointError(path, fieldOf(where), `${issue?.message ?? 'is invalid'} (found ${describeValue(valueAt(json, where))})`);
}

export function checkpointName(prefix: string, epoch: number, step: number): string {
  return `${prefix}-${epoch}_${step}`;
}

/** The (epoch, step) of a checkpoint name, or null when the name is not one checkpointName makes. */
export function parseCheckpointName(name: string): { prefix: string; epoch: number; step: number } | null {
  const m = /^([^./\\][^/\\]*)-(\d+)_(\d+)$/.exec(name);
  if (!m) return null;
  return { prefix: m[1] as string, epoch: Number(m[2]), step: Number(m[3]) };
}

function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

/** Orders checkpoint names by parsed (epoch, step): `x-1_9` before `x-1_10`, which a string sort inverts. */
export function compareCheckpointNames(a: string, b: string): number {
  const pa = parseCheckpointName(a);
  const pb = parseCheckpointName(b);
  // Other names (sftkit writes none) go first, in string order.
  if (pa === null && pb === null) return compareStrings(a, b);
  if (pa === null) return -1;
  if (pb === null) return 1;
  if (pa.epoch !== pb.epoch) return pa.epoch - pb.epoch;
  if (pa.step !== pb.step) return pa.step - pb.step;
  return compareStrings(a, b);
}

/** A name meta.json may list: a folder directly under the root, never a path out of it. */
function isPlainName(name: string): boolean {
  return name !== '' && !name.startsWith('.') && !/[/\\]/.test(name);
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function readMeta(root: string): Meta | null {
  const path = join(root, META_FILE);
  if (!existsSync(path)) return null;
  const meta = readValidated(path, metaSchema);
  return { latest: meta.latest, checkpoints: meta.checkpoints.filter(isPlainName), ...(meta.best !== undefined && isPlainName(meta.best) ? { best: meta.best } : {}) };
}

function readMetaSafe(root: string): Meta | null {
  try {
    return readMeta(root);
  } catch {
    return null;
  }
}

// Checked, fsync'd and renamed into place; its temp name starts with META_TEMP_PREFIX, which the sweep knows.
function writeMeta(root: string, meta: Meta): void {
  writeFileAtomicSync(join(root, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
}

/** Complete checkpoints found by listing the root (no meta.json to go by), oldest first. */
function listedCheckpoints(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((d) => parseCheckpointName(d) !== null && existsSync(join(root, d, TRAINER_STATE_FILE)))
    .sort(compareCheckpointNames);
}

/**
 * Removes a checkpoint folder so that no half-deleted folder can keep its name: it is renamed to a hidden
 * `.<name>.pruned` first (one atomic step), then deleted; a run's start sweeps any such folder left behind.
 */
function pruneCheckpoint(root: string, name: string): void {
  const hidden = join(root, `.${name}${PRUNED_SUFFIX}`);
  rmSync(hidden, { recursive: true, force: true });
  renameSync(join(root, name), hidden);
  rmSync(hidden, { recursive: true, force: true });
}

export interface SweepOptions {
  /** A checkpoint this run resumes from: never removed, even when meta.json does not list it. */
  keep?: string | null;
  /** Told of each thing removed, one line each. */
  log: (message: string) => void;
}

/**
 * Cleans a checkpoint root at the start of a run (rank 0, before any save): temp folders of saves that
 * never finished, meta.json temp files, half-deleted folders of prunes, and, when meta.json exists,
 * checkpoint folders it does not list (written but never committed, or dropped from it but not yet deleted).
 * Without a readable meta.json complete checkpoints stay: they are what resume falls back to. Returns the
 * names removed.
 */
export function sweepCheckpointRoot(root: string, opts: SweepOptions): string[] {
  if (!isDir(root)) return [];
  const meta = readMetaSafe(root);
  const listed = new Set(meta?.checkpoints ?? []);
  if (meta) listed.add(meta.latest);
  if (meta?.best !== undefined) listed.add(meta.best);
  const removed: string[] = [];
  for (const entry of readdirSync(root).sort()) {
    const path = join(root, entry);
    let why: string | null = null;
    if (entry.startsWith('.') && entry.endsWith(TEMP_SUFFIX) && isDir(path)) why = 'the temp folder of a save that never finished';
    else if (entry.startsWith('.') && entry.endsWith(PRUNED_SUFFIX) && isDir(path)) why = 'a checkpoint whose deletion never finished';
    else if (entry.startsWith(META_TEMP_PREFIX)) why = `a ${META_FILE} temp file of a run that stopped while writing it`;
    else if (meta && entry !== opts.keep && parseCheckpointName(entry) !== null && !listed.has(entry) && isDir(path)) {
      why = `a checkpoint that ${META_FILE} does not list (saved but never committed, or pruned but never deleted)`;
    }
    if (why === null) continue;
    if (entry.startsWith('.')) rmSync(path, { recursive: true, force: true });
    else pruneCheckpoint(root, entry);
    removed.push(entry);
    opts.log(`checkpoint housekeeping: removed ${path}: ${why}`);
  }
  return removed;
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
  /** The best checkpoint's name (callbacks.early_stopping), kept beyond keepMax and named in meta.json; may be `name`. */
  best?: string | null;
  /**
   * Where a LoRA run's frozen base was loaded from: its checkpoints then hold the adapter (PEFT's files), not
   * the base, and name this folder in sftkit.json's base_model (and adapter_config.json). Without it (a base made
   * from model.arch) a LoRA checkpoint stores the base's weights too.
   */
  base?: BaseModelRef | null;
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

/** A write error (a full disk, a read-only folder) as a FormatError naming the checkpoint being written. */
function saveError(err: unknown, dir: string): SftkitError {
  if (err instanceof SftkitError) return err;
  return new FormatError(`could not write checkpoint ${dir}: ${(err as Error).message}`, {
    where: dir,
    hint: 'check free space and permissions of the output folder; the previous checkpoint is kept',
  });
}

function hashFiles(dir: string, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of [...names].sort()) out[f] = sha256File(join(dir, f));
  return out;
}

/**
 * Writes one training checkpoint with every rank: rank 0 prepares a temp directory, each rank writes its
 * optimizer shard and rank file into it, rank 0 adds the weights, trainer_state.json and sftkit.json, renames
 * it into place, then writes meta.json and prunes beyond keep_checkpoint_max. Any failure, on any rank,
 * removes the temp directory and throws on every rank. Returns the directory.
 */
export async function saveCheckpoint(o: SaveOptions): Promise<string> {
  const { pg } = o;
  const dir = join(o.root, o.name);
  const tmp = join(o.root, `.${o.name}${TEMP_SUFFIX}`);
  // Every rank takes part in the same collectives whatever fails, so a failure never leaves a rank waiting.
  const agree = (failure: unknown): void => {
    const failed = (pg.allReduceNumbers([failure === null ? 0 : 1], 'max')[0] as number) > 0;
    if (!failed) return;
    if (pg.rank === 0) rmSync(tmp, { recursive: true, force: true });
    throw failure === null ? new FormatError(`could not write checkpoint ${dir}: another rank failed to write its part`, { where: dir }) : saveError(failure, dir);
  };
  let failure: unknown = null;
  if (pg.rank === 0) {
    try {
      mkdirSync(o.root, { recursive: true });
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(join(tmp, 'optimizer'), { recursive: true });
    } catch (err) {
      failure = err;
    }
  }
  agree(failure);
  try {
    o.optimizer.save(join(tmp, 'optimizer'));
    writeFileSync(join(tmp, `rank_${o.rank.rank}.json`), `${JSON.stringify(o.rank, null, 2)}\n`);
  } catch (err) {
    failure = err;
  }
  agree(failure);
  // ZeRO-3: the weights stream out layer group by layer group, gathered by every rank while rank 0 writes.
  o.model.params.beginSave();
  if (pg.rank !== 0) o.model.params.endSave();
  if (pg.rank === 0) {
    try {
      // A LoRA run's adapters in PEFT's files (PeftModel.from_pretrained reads this folder), with a reference to
      // the frozen base instead of its weights when the run knows where the base lives. Written while the
      // weights are gathered (ZeRO-3 shards them between beginSave and endSave).
      const base = o.model.params.lora && o.base ? o.base : null;
      let files: WrittenFile[];
      try {
        files = base ? writeAssetFiles(tmp, o.model, o.assetsDir) : writeModelFiles(tmp, o.model, { assetsDir: o.assetsDir });
        if (o.model.params.lora) files.push(...writeAdapterFiles(tmp, o.model, base?.name_or_path ?? null));
      } finally {
        o.model.params.endSave();
      }
      const state: TrainerState = { ...o.state, optimizer_files: hashFiles(join(tmp, 'optimizer'), readdirSync(join(tmp, 'optimizer'))) };
      writeFileSync(join(tmp, TRAINER_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
      writeManifest(tmp, { model_type: o.model.config.modelType, dtype: 'float32', ...sourceDtypeOf(o.model), source: { path: o.name, format: 'sftkit-training' }, ...(base ? { base_model: base } : {}) }, files);
      fsyncPath(join(tmp, 'optimizer'));
      fsyncPath(tmp);
      // The same step saved again (e.g. a stop right after a save): the old folder leaves by a rename too.
      const replaced = existsSync(dir) ? join(o.root, `.${o.name}${PRUNED_SUFFIX}`) : null;
      if (replaced !== null) {
        rmSync(replaced, { recursive: true, force: true });
        renameSync(dir, replaced);
      }
      renameSync(tmp, dir);
      if (replaced !== null) rmSync(replaced, { recursive: true, force: true });
      fsyncPath(o.root);
    } catch (err) {
      failure = err;
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  agree(failure);
  if (pg.rank === 0) {
    // The commit: meta.json (replaced atomically) names it; then the oldest beyond keep_checkpoint_max go.
    // Without a meta.json, the complete checkpoints on disk, in (epoch, step) order, are the earlier ones.
    const meta = readMetaSafe(o.root);
    const earlier = meta ? meta.checkpoints.filter((c) => isDir(join(o.root, c))) : listedCheckpoints(o.root);
    const checkpoints = [...earlier.filter((c) => c !== o.name), o.name];
    const best = o.best ?? null;
    const recent = checkpoints.slice(Math.max(0, checkpoints.length - o.keepMax));
    const keep = best !== null && checkpoints.includes(best) && !recent.includes(best) ? [best, ...recent] : recent;
    try {
      writeMeta(o.root, { latest: o.name, checkpoints: keep, ...(best !== null && keep.includes(best) ? { best } : {}) });
      for (const old of checkpoints.filter((c) => !keep.includes(c))) pruneCheckpoint(o.root, old);
    } catch (err) {
      failure = err;
    }
  }
  agree(failure);
  return dir;
}

export interface LoadedCheckpoint {
  dir: string;
  name: string;
  state: TrainerState;
  ranks: RankState[];
}

/** Reads trainer_state.json, checked field by field. */
export function readTrainerState(dir: string): TrainerState {
  const path = join(dir, TRAINER_STATE_FILE);
  if (!existsSync(path)) throw new FormatError(`${dir}: not a training checkpoint (no ${TRAINER_STATE_FILE})`, { where: dir });
  return readValidated(path, trainerStateSchema);
}

/** Reads rank_<r>.json, checked field by field; its rank must be the one its name says. */
export function readRankState(dir: string, rank: number): RankState {
  const path = join(dir, `rank_${rank}.json`);
  const state = readValidated(path, rankStateSchema);
  if (state.rank !== rank) throw new CheckpointError(path, 'rank', `is ${state.rank}, but the file is rank ${rank}'s`);
  return state;
}

/**
 * Verifies a training checkpoint: every file against its sha256 (in sftkit.json; optimizer shards in
 * trainer_state.json), then trainer_state.json and each rank_<r>.json (one per rank of world_size) against
 * their schema, which a hash alone does not give (a file rewritten with its hash, a checkpoint from a tool).
 */
export function verifyCheckpoint(dir: string): LoadedCheckpoint {
  const manifest = readManifest(dir);
  for (const [file, sha] of Object.entries(manifest.files)) {
    const path = join(dir, file);
    if (!existsSync(path)) throw new FormatError(`${path}: missing (listed in ${MANIFEST_FILE})`, { where: path });
    if (sha256File(path) !== sha) throw new FormatError(`${path}: content does not match its sha256 in ${MANIFEST_FILE}`, { where: path });
  }
  const state = readTrainerState(dir);
  for (const [file, sha] of Object.entries(state.optimizer_files)) {
    const path = join(dir, 'optimizer', file);
    // The name comes from trainer_state.json: the error names both it and the shard.
    if (!existsSync(path)) throw new CheckpointError(join(dir, TRAINER_STATE_FILE), 'optimizer_files', `names ${describeValue(file)}, but ${path} is missing`);
    if (sha256File(path) !== sha) throw new FormatError(`${path}: corrupt optimizer shard (its sha256 differs from ${TRAINER_STATE_FILE}'s)`, { where: path });
  }
  const ranks: RankState[] = [];
  for (let r = 0; r < state.world_size; r++) {
    if (!existsSync(join(dir, `rank_${r}.json`))) {
      throw new CheckpointError(join(dir, TRAINER_STATE_FILE), 'world_size', `is ${state.world_size}, but rank_${r}.json is missing`);
    }
    ranks.push(readRankState(dir, r));
  }
  return { dir, name: basename(dir), state, ranks };
}

/**
 * The checkpoint to resume from under `root`: `name` when given, else meta.json's latest; an unusable one
 * (corrupt, or failing its schema) falls back to the previous checkpoint (warn is told why). Without a
 * readable meta.json, the complete checkpoints on disk are tried from the highest (epoch, step) down.
 */
export function findResumeCheckpoint(root: string, name: string | null, warn: (msg: string) => void): LoadedCheckpoint {
  if (name) return verifyCheckpoint(join(root, name));
  const meta = readMetaSafe(root);
  const candidates = meta ? [...meta.checkpoints].reverse() : listedCheckpoints(root).reverse();
  if (meta && isPlainName(meta.latest) && !candidates.includes(meta.latest)) candidates.unshift(meta.latest);
  const reasons: string[] = [];
  for (const c of candidates) {
    try {
      return verifyCheckpoint(join(root, c));
    } catch (err) {
      reasons.push(`${c}: ${(err as Error).message}`);
      warn(`checkpoint ${c} is unusable (${(err as Error).message}); trying the previous one`);
    }
  }
  // Name what was consulted: meta.json and its list when it was read, else the folder's checkpoints.
  const where = meta ? join(root, META_FILE) : root;
  const tried = candidates.length === 0 ? (meta ? 'it lists no checkpoint' : 'it holds no complete checkpoint') : `tried ${reasons.slice(0, 3).join('; ')}${reasons.length > 3 ? '; …' : ''}`;
  throw new FormatError(`${where}: no usable training checkpoint to resume from (${tried})`, { where, hint: 'start without --resume_training' });
}
