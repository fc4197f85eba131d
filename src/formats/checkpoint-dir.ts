// The model checkpoint directory (DESIGN.md contract): HF config, generation config, safetensors weights,
// tokenizer files and `sftkit.json` (format, version, dtype, source, sha256 of every file). Directories are
// built in a temp directory next to the target, fsync'd and renamed, so a failure leaves nothing behind.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fsyncSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, mkdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfigError, FormatError, MAX_DOCUMENT_DEPTH, describeValue, nestingDepth } from '../errors.ts';
import { writeTextFile, type WrittenFile } from './safetensors-writer.ts';

export const CHECKPOINT_FORMAT = 'sftkit-checkpoint';
export const CHECKPOINT_VERSION = 1;
export const MANIFEST_FILE = 'sftkit.json';

/** Tokenizer files an HF folder may hold; each present one is copied as is. */
export const TOKENIZER_FILES = [
  'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json',
  'vocab.json', 'merges.txt', 'chat_template.jinja', 'chat_template.json',
];

export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  model_type: string;
  /** PyTorch name of the weights' float dtype, or "mixed". */
  dtype: string;
  source: { path: string; format: string };
  /** sha256 of every other file in the directory, by relative name. */
  files: Record<string, string>;
}

export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
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

/** Copies a small file into `dir` (same name) and returns its hash. */
export function copyInto(src: string, dir: string, name = basename(src)): WrittenFile {
  const dst = join(dir, name);
  copyFileSync(src, dst);
  const fd = openSync(dst, 'r');
  fsyncSync(fd);
  closeSync(fd);
  return { name, sha256: sha256File(dst), bytes: statSync(dst).size };
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

/**
 * Builds a directory at `target` through a temp directory next to it: `fill` writes into the temp
 * directory; on success it is fsync'd and renamed, on any error removed. `target` must not exist or be empty.
 */
export async function writeDirAtomically<T>(target: string, fill: (tmp: string) => Promise<T> | T): Promise<T> {
  const abs = resolve(target);
  if (existsSync(abs)) {
    if (!statSync(abs).isDirectory() || readdirSync(abs).length > 0) {
      throw new ConfigError(`${target} already exists and is not an empty directory`, { where: target, hint: 'choose another --output_path or remove it' });
    }
  }
  const parent = dirname(abs);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(abs)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp);
  try {
    const out = await fill(tmp);
    fsyncDir(tmp);
    if (existsSync(abs)) rmSync(abs, { recursive: true });
    renameSync(tmp, abs);
    fsyncDir(parent);
    return out;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
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
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new FormatError(`${path}: cannot read (${(err as Error).message})`, { where: path, hint: 'is this a sftkit checkpoint? `sftkit convert` writes one' });
  }
  const m = json as Partial<CheckpointManifest> | null;
  if (m?.format !== CHECKPOINT_FORMAT) throw new FormatError(`${path}: format is ${describeValue(m?.format)}, not "${CHECKPOINT_FORMAT}"`, { where: path });
  if (m.version !== CHECKPOINT_VERSION) {
    throw new FormatError(`${path}: checkpoint version ${describeValue(m.version)} is not supported (this sftkit reads version ${CHECKPOINT_VERSION})`, {
      where: path,
      hint: 'use the sftkit version that wrote it, or re-convert from the HF weights',
    });
  }
  return m as CheckpointManifest;
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
      latest = (JSON.parse(readFileSync(metaPath, 'utf8')) as { latest?: unknown }).latest;
    } catch (err) {
      throw new FormatError(`${metaPath}: cannot read (${(err as Error).message})`, { where: metaPath });
    }
    if (typeof latest !== 'string' || latest === '' || latest.includes('/') || latest === '..' || !existsSync(join(path, latest, MANIFEST_FILE))) {
      throw new FormatError(`${metaPath}: "latest" ${describeValue(latest)} does not name a checkpoint in ${path}`, { where: metaPath });
    }
    return join(path, latest);
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
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new FormatError(`${path}: cannot read (${(err as Error).message})`, { where: path });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(`${path}: not a JSON object`, { where: path });
  if (nestingDepth(json, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH) {
    throw new FormatError(`${path}: nested more than ${MAX_DOCUMENT_DEPTH} levels deep`, { where: path, hint: 'the file is corrupt' });
  }
  return json as Record<string, unknown>;
}
