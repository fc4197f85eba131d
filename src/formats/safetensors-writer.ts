// safetensors writer: streams one tensor at a time into a temp file that is fsync'd and renamed, shards by a
// byte budget and writes the HF index (`model.safetensors.index.json`); `__metadata__.format` is "pt".
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';
import { DTYPE_BYTES, numelOf, type WeightDtype } from './dtypes.ts';
import { fileError, writeAllSync, writeFileAtomicSync } from './write-file.ts';

export interface TensorSpec {
  name: string;
  dtype: WeightDtype;
  shape: number[];
}

/** Produces a tensor's little-endian bytes when the writer reaches it (so only one is in memory at a time). */
export type TensorBytes = (spec: TensorSpec) => Uint8Array;

export interface WrittenFile {
  /** File name relative to the directory written. */
  name: string;
  sha256: string;
  bytes: number;
}

export function byteSize(spec: TensorSpec): number {
  const n = numelOf(spec.shape);
  if (n === null) throw new FormatError(`tensor ${spec.name}: shape [${spec.shape.join(', ')}] is too large`, { where: spec.name });
  return n * DTYPE_BYTES[spec.dtype];
}


/** Writes one safetensors file atomically (temp + fsync + rename); tensors keep the order given. */
export function writeSafetensors(path: string, specs: TensorSpec[], bytesOf: TensorBytes, metadata: Record<string, string> = {}): WrittenFile {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  const seen = new Set<string>();
  let offset = 0;
  for (const s of specs) {
    if (seen.has(s.name) || s.name === '__metadata__') throw new FormatError(`${path}: tensor ${s.name} given twice`, { where: `${path}: ${s.name}` });
    seen.add(s.name);
    const size = byteSize(s);
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  const pad = (8 - (json.byteLength % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.byteLength));

  const tmp = `${path}.tmp-${process.pid}`;
  const hash = createHash('sha256');
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (err) {
    throw fileError(err, path, 'create');
  }
  try {
    for (const part of [len, json]) {
      writeAllSync(fd, part, path);
      hash.update(part);
    }
    for (const s of specs) {
      const data = bytesOf(s);
      if (data.byteLength !== byteSize(s)) {
        throw new FormatError(`${path}: tensor ${s.name} has ${data.byteLength} bytes, expected ${byteSize(s)}`, { where: `${path}: ${s.name}` });
      }
      writeAllSync(fd, data, path);
      hash.update(data);
    }
    try {
      fsyncSync(fd);
    } catch (err) {
      throw fileError(err, path, 'flush');
    }
    closeSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  renameSync(tmp, path);
  return { name: path, sha256: hash.digest('hex'), bytes: 8 + json.byteLength + offset };
}

export interface ShardOptions {
  /** Largest data size of one shard in bytes; a single larger tensor gets a shard of its own. */
  maxShardBytes: number;
  /** `model` gives model.safetensors or model-00001-of-0000N.safetensors + model.safetensors.index.json. */
  baseName?: string;
  metadata?: Record<string, string>;
}

/** Groups tensors greedily, in order, into shards of at most maxShardBytes (as transformers' save_pretrained does). */
export function planShards(specs: TensorSpec[], maxShardBytes: number): TensorSpec[][] {
  const shards: TensorSpec[][] = [];
  let cur: TensorSpec[] = [];
  let size = 0;
  for (const s of specs) {
    const b = byteSize(s);
    if (cur.length > 0 && size + b > maxShardBytes) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(s);
    size += b;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);
  return shards;
}

/** Writes tensors into `dir` as one file or as shards plus an index; returns every file written. */
export function writeSafetensorsSharded(dir: string, specs: TensorSpec[], bytesOf: TensorBytes, opts: ShardOptions): WrittenFile[] {
  const base = opts.baseName ?? 'model';
  // Within a shard, wider dtypes first keeps every tensor aligned to its element size for mmap readers.
  const shards = planShards(specs, opts.maxShardBytes).map((s) => [...s].sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype]));
  const rel = (p: string): string => p.slice(dir.length + 1);
  if (shards.length === 1) {
    const f = writeSafetensors(join(dir, `${base}.safetensors`), shards[0]!, bytesOf, opts.metadata);
    return [{ ...f, name: rel(f.name) }];
  }
  const files: WrittenFile[] = [];
  const weightMap: Record<string, string> = {};
  let total = 0;
  const n = String(shards.length).padStart(5, '0');
  shards.forEach((shard, i) => {
    const name = `${base}-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`;
    const f = writeSafetensors(join(dir, name), shard, bytesOf, opts.metadata);
    files.push({ ...f, name });
    for (const s of shard) {
      weightMap[s.name] = name;
      total += byteSize(s);
    }
  });
  const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
  const index = `${JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2)}\n`;
  files.push(writeTextFile(join(dir, `${base}.safetensors.index.json`), index, rel));
  return files;
}

/** Writes a small text file atomically and returns its hash; a failing write names the file and leaves no temp. */
export function writeTextFile(path: string, text: string, rel: (p: string) => string = (p) => p): WrittenFile {
  return { name: rel(path), ...writeFileAtomicSync(path, text) };
}
