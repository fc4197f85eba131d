// The model checkpoint directory (DESIGN.md contract): HF config, generation config, safetensors weights,
// tokenizer files and `sftkit.json` (format, version, dtype, source, sha256 of every file). Directories are
// built in a temp directory next to the target, fsync'd and renamed, so a failure leaves nothing behind.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readSync, readdirSync, renameSync, rmSync, rmdirSync, mkdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfigError, FormatError, MAX_DOCUMENT_DEPTH, describeValue, nestingDepth } from '../errors.ts';
import { confinedRealPath, openConfined, readConfined, readConfinedText } from './confined-file.ts';
import { fileError, writeFileAtomicSync } from './write-file.ts';
import { writeTextFile, type WrittenFile } from './safetensors-writer.ts';

export const CHECKPOINT_FORMAT = 'sftkit-checkpoint';
export const CHECKPOINT_VERSION = 1;
export const MANIFEST_FILE = 'sftkit.json';

/** Tokenizer files an HF folder may hold; each present one is copied as is. */
export const TOKENIZER_FILES = [
  'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json',
  'vocab.json', 'merges.txt', 'chat_template.jinja', 'chat_template.json',
];

/** Whether `dir` holds a tokenizer sftkit reads (tokenizer.model or tokenizer.json). */
export function hasTokenizerFiles(dir: string): boolean {
  return ['tokenizer.model', 'tokenizer.json'].some((f) => existsSync(join(dir, f)));
}

export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  model_type: string;
  /** PyTorch name of the weights' float dtype, or "mixed". */
  dtype: string;
  /**
   * PyTorch name of the dtype the weights were published in (the first HF folder's torch_dtype), carried from
   * checkpoint to checkpoint through training (which stores float32) so `convert --reversed` writes it back.
   */
  source_dtype?: string;
  source: { path: string; format: string };
  /**
   * A LoRA run's checkpoint holds its adapter, not the frozen base: the base is read from `dir` (the resolved
   * folder, absolute) and was named `name_or_path` (a hub repo id or the path as given).
   */
  base_model?: { name_or_path: string; dir: string };
  /** sha256 of every other file in the directory, by relative name. */
  files: Record<string, string>;
}

/** Where a LoRA checkpoint's frozen base lives (sftkit.json's base_model). */
export type BaseModelRef = NonNullable<CheckpointManifest['base_model']>;

/** sha256 of a file of a model or checkpoint folder (never through a link leading out of it). */
export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openConfined(path);
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.byteLength, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * Copies a small file of a model folder into `dir` (same name) and returns its hash. The source is read confined
 * to its folder: a tokenizer file that links to /etc/passwd is refused, not copied into a checkpoint.
 */
export function copyInto(src: string, dir: string, name = basename(src)): WrittenFile {
  const written = writeFileAtomicSync(join(dir, name), readConfined(src));
  return { name, ...written };
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    fsyncSync(fd);
    closeSync(fd);
  } catch {
    // Some file systems do not allow fsync on directories; the rename is still atomic.
  }
}

export interface WriteDirOptions {
  /** Replace an existing directory once the new one is complete (the old one stays until then). */
  overwrite?: boolean;
  /** The command-line flag that named `target`, for the hint (default --output_path). */
  flag?: string;
}

/**
 * Builds a directory at `target` through a temp directory next to it: `fill` writes into the temp
 * directory; on success it is fsync'd and renamed, on any error removed. `target` must not exist or be empty,
 * unless `overwrite` (then an existing directory is replaced only after the new one is complete).
 */
export async function writeDirAtomically<T>(target: string, fill: (tmp: string) => Promise<T> | T, opts: WriteDirOptions = {}): Promise<T> {
  const abs = resolve(target);
  if (existsSync(abs)) {
    const isDir = statSync(abs).isDirectory();
    if (!isDir || (readdirSync(abs).length > 0 && opts.overwrite !== true)) {
      const flag = opts.flag ?? '--output_path';
      throw new ConfigError(`${target} already exists and is not an empty directory`, { where: target, hint: `choose another ${flag}${isDir && opts.overwrite === false ? ', pass --force to replace it,' : ''} or remove it` });
    }
  }
  const parent = dirname(abs);
  const tmp = join(parent, `.${basename(abs)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  // The topmost parent folder this call creates, so that a failure can take it away again.
  let createdParent: string | undefined;
  try {
    createdParent = mkdirSync(parent, { recursive: true });
    mkdirSync(tmp);
  } catch (err) {
    throw fileError(err, target, 'create');
  }
  try {
    const out = await fill(tmp);
    fsyncDir(tmp);
    if (existsSync(abs)) {
      // The old directory leaves under a hidden name first, so that no moment has a half-deleted one in place.
      const old = join(parent, `.${basename(abs)}.old-${process.pid}-${randomBytes(4).toString('hex')}`);
      renameSync(abs, old);
      rmSync(old, { recursive: true, force: true });
    }
    try {
      renameSync(tmp, abs);
    } catch (err) {
      throw fileError(err, target, 'move into place');
    }
    fsyncDir(parent);
    return out;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (createdParent !== undefined) removeEmptyParents(parent, createdParent);
    throw err;
  }
}

/** Removes `dir` and its parents up to `top` while they are empty (best effort: the caller's error matters more). */
function removeEmptyParents(dir: string, top: string): void {
  try {
    for (let d = dir; d.length >= top.length && d !== dirname(d); d = dirname(d)) {
      if (readdirSync(d).length > 0) return;
      rmdirSync(d);
    }
  } catch {
    // A folder left behind is untidy, not wrong.
  }
}

/** Writes sftkit.json, hashing every file in `dir` that `known` does not already give. */
export function writeManifest(dir: string, info: Omit<CheckpointManifest, 'format' | 'version' | 'files'>, known: WrittenFile[]): CheckpointManifest {
  const hashes = new Map(known.map((f) => [f.name, f.sha256]));
  const files: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) {
    if (name === MANIFEST_FILE || !statSync(join(dir, name)).isFile()) continue;
    files[name] = hashes.get(name) ?? sha256File(join(dir, name));
  }
  const manifest: CheckpointManifest = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, ...info, files };
  writeTextFile(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

export function readManifest(dir: string): CheckpointManifest {
  const path = join(dir, MANIFEST_FILE);
  let json: unknown;
  try {
    json = JSON.parse(readConfinedText(path));
  } catch (err) {
    // A FormatError from the confined read already starts with the path; keep only its reason.
    const message = (err as Error).message;
    const why = message.startsWith(`${path}: `) ? message.slice(path.length + 2) : message;
    throw new FormatError(`${path}: cannot read (${why})`, { where: path, hint: 'is this a sftkit checkpoint? `sftkit convert` writes one' });
  }
  const m = json as Partial<CheckpointManifest> | null;
  if (m?.format !== CHECKPOINT_FORMAT) throw new FormatError(`${path}: format is ${describeValue(m?.format)}, not "${CHECKPOINT_FORMAT}"`, { where: path });
  if (m.version !== CHECKPOINT_VERSION) {
    throw new FormatError(`${path}: checkpoint version ${describeValue(m.version)} is not supported (this sftkit reads version ${CHECKPOINT_VERSION})`, {
      where: path,
      hint: 'use the sftkit version that wrote it, or re-convert from the HF weights',
    });
  }
  if (m.source_dtype !== undefined && typeof m.source_dtype !== 'string') {
    throw new FormatError(`${path}: source_dtype must be a string (got ${describeValue(m.source_dtype)})`, { where: `${path}: source_dtype` });
  }
  const base = m.base_model as unknown;
  if (base !== undefined) {
    const b = base as { name_or_path?: unknown; dir?: unknown } | null;
    if (typeof b !== 'object' || b === null || typeof b.name_or_path !== 'string' || typeof b.dir !== 'string' || b.dir === '') {
      throw new FormatError(`${path}: base_model must be {name_or_path, dir} strings (got ${describeValue(base)})`, { where: `${path}: base_model` });
    }
  }
  return m as CheckpointManifest;
}

/** sftkit.json's source_dtype when `dir` is a sftkit checkpoint that has one, else null (an HF folder, an older checkpoint). */
export function readSourceDtype(dir: string): string | null {
  if (!existsSync(join(dir, MANIFEST_FILE))) return null;
  return readManifest(dir).source_dtype ?? null;
}

/**
 * The model checkpoint a path names: a model checkpoint, a training checkpoint (a model checkpoint plus
 * trainer state), or a `checkpoint/` root whose meta.json names the latest one.
 */
export function resolveCheckpointDir(path: string): string {
  if (existsSync(join(path, MANIFEST_FILE))) return path;
  const metaPath = join(path, 'meta.json');
  if (existsSync(metaPath)) {
    let latest: unknown;
    try {
      latest = (JSON.parse(readConfinedText(metaPath)) as { latest?: unknown }).latest;
    } catch (err) {
      throw new FormatError(`${metaPath}: cannot read (${(err as Error).message})`, { where: metaPath });
    }
    if (typeof latest !== 'string' || latest === '' || latest.includes('/') || latest === '..' || !existsSync(join(path, latest, MANIFEST_FILE))) {
      throw new FormatError(`${metaPath}: "latest" ${describeValue(latest)} does not name a checkpoint in ${path}`, { where: metaPath });
    }
    const chosen = join(path, latest);
    // The latest checkpoint may not be a link to a folder elsewhere: its files would then be read from there.
    confinedRealPath(chosen, { root: path });
    return chosen;
  }
  throw new FormatError(`${path}: not a sftkit checkpoint (no ${MANIFEST_FILE} or meta.json)`, {
    where: path,
    hint: 'pass a directory written by `sftkit convert` or by training (output/checkpoint/...)',
  });
}

/** Reads a JSON file as an object, with errors naming it. */
export function readJsonFile(path: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readConfinedText(path));
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw new FormatError(`${path}: cannot read (${(err as Error).message})`, { where: path });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(`${path}: not a JSON object`, { where: path });
  if (nestingDepth(json, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH) {
    throw new FormatError(`${path}: nested more than ${MAX_DOCUMENT_DEPTH} levels deep`, { where: path, hint: 'the file is corrupt' });
  }
  return json as Record<string, unknown>;
}
