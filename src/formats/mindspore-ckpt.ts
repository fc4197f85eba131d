// MindSpore `.ckpt` checkpoints: a protobuf `Checkpoint { repeated Value value = 1 }`, each Value a tag and a
// `TensorProto { repeated int64 dims = 1; string tensor_type = 2; bytes tensor_content = 3 }`
// (mindspore-ai/mindspore, mindspore/ccsrc/utils/checkpoint.proto). `save_checkpoint` writes one serialized
// Checkpoint per Value, one after another (which protobuf reads as one message), and splits a tensor's bytes
// over several Values with the same tag and dims, 512 MiB each; `load_checkpoint` joins consecutive Values of
// one tag and reads dims `[0]` as a scalar (mindspore/python/mindspore/train/serialization.py: `_exec_save`,
// `_write_parameter_bytes_data`, `load_checkpoint`). The reader walks the file with small positioned reads and
// reads a tensor's bytes only when asked; the writer streams one tensor at a time into a temp file.
import { renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { FormatError, describeValue } from '../errors.ts';
import { openFileSource, type ByteSource } from './byte-source.ts';
import { DTYPE_BYTES, numelOf, type WeightDtype } from './dtypes.ts';
import { decodeVarint, ProtoWriter, WIRE_BYTES, WIRE_VARINT } from './protobuf.ts';
import type { TensorFile, TensorInfo } from './tensor-file.ts';
import { fileError, openForWrite, syncAndClose, writeAllSync, type WrittenBytes } from './write-file.ts';

/** MindSpore's `str(dtype)` names (serialization.py `tensor_to_ms_type`) for the dtypes sftkit stores. */
export const MS_TENSOR_TYPES: Readonly<Record<string, WeightDtype>> = {
  Float32: 'F32', Float16: 'F16', BFloat16: 'BF16', Float64: 'F64',
  Int32: 'I32', Int64: 'I64', Int16: 'I16', Int8: 'I8', UInt8: 'U8', Bool: 'BOOL',
};
const MS_NAME_OF: Partial<Record<WeightDtype, string>> = Object.fromEntries(Object.entries(MS_TENSOR_TYPES).map(([k, v]) => [v, k]));

/** Values that are not tensors: strings from `append_dict` and the graph's random-op state. Listed, never read. */
const NON_TENSOR_TYPES = new Set(['str', 'random_op']);

/** `_write_parameter_bytes_data` splits a tensor into Values of at most this many bytes (SLICE_SIZE KB × 1024). */
export const CKPT_CHUNK_BYTES = 512 * 1024 * 1024;

/** Far more Values than any real checkpoint (a 70B model has ~800 tensors); bounds the work a hostile file causes. */
const MAX_VALUES = 1 << 20;
const MAX_TAG_BYTES = 64 * 1024;
const MAX_DIMS = 64;

export interface CkptTensor extends TensorInfo {
  /** MindSpore's name of the dtype (`Float32`, `BFloat16`, ...). */
  msType: string;
  /** Where the bytes lie: one range, or several for a tensor saved in slices. */
  chunks: Array<{ offset: number; length: number }>;
}

export interface MindSporeCkpt extends TensorFile {
  readonly tensors: readonly CkptTensor[];
  /** Values that are not tensors (append_dict strings, random_op), by tag and type. */
  readonly others: ReadonlyArray<{ name: string; type: string }>;
  get(name: string): CkptTensor | undefined;
}

const HINT = 'the file is corrupt, encrypted (save_checkpoint with enc_key), or not a MindSpore checkpoint';

class Walker {
  constructor(readonly src: ByteSource) {}

  fail(msg: string, tensor?: string): never {
    const where = tensor === undefined ? this.src.name : `${this.src.name}: tensor ${tensor}`;
    throw new FormatError(`${where}: ${msg}`, { where, hint: HINT });
  }

  /** A varint at `pos` that must end before `end`. */
  varint(pos: number, end: number, what: string, tensor?: string): { value: number; next: number } {
    const bytes = this.src.read(pos, Math.min(10, end - pos), what);
    const v = decodeVarint(bytes, 0);
    if (v === null || v === 'long') return this.fail(`${what}: malformed varint at byte ${pos}`, tensor);
    return { value: v.value, next: pos + v.length };
  }

  /**
   * Walks the fields of the message in [start, end): for each, its number, wire type, and either the varint
   * value or the payload's byte range (payloads are not read here).
   */
  fields(start: number, end: number, what: string, visit: (f: { field: number; wire: number; value: number; offset: number; length: number }) => void, tensor?: string): void {
    let pos = start;
    while (pos < end) {
      const key = this.varint(pos, end, what, tensor);
      const field = Math.floor(key.value / 8);
      const wire = key.value % 8;
      pos = key.next;
      if (field === 0) this.fail(`${what}: field number 0 at byte ${pos}`, tensor);
      if (wire === WIRE_VARINT) {
        const v = this.varint(pos, end, what, tensor);
        visit({ field, wire, value: v.value, offset: 0, length: 0 });
        pos = v.next;
      } else if (wire === WIRE_BYTES) {
        const len = this.varint(pos, end, what, tensor);
        if (!Number.isSafeInteger(len.value) || len.next + len.value > end) this.fail(`${what}: field ${field} claims ${len.value} bytes at byte ${len.next}, past the end of its message (byte ${end})`, tensor);
        visit({ field, wire, value: 0, offset: len.next, length: len.value });
        pos = len.next + len.value;
      } else if (wire === 1 || wire === 5) {
        const n = wire === 1 ? 8 : 4;
        if (pos + n > end) this.fail(`${what}: field ${field} runs past the end of its message`, tensor);
        pos += n;
      } else {
        this.fail(`${what}: unsupported wire type ${wire} at byte ${pos}`, tensor);
      }
    }
  }

  text(offset: number, length: number, what: string, tensor?: string): string {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(this.src.read(offset, length, what));
    } catch (err) {
      if (err instanceof FormatError) throw err;
      return this.fail(`${what} is not valid UTF-8`, tensor);
    }
  }
}

interface RawValue {
  tag: string;
  type: string;
  dims: number[];
  content: { offset: number; length: number };
}

function readValue(w: Walker, start: number, end: number, index: number): RawValue {
  let tag: string | null = null;
  let tensor: { offset: number; length: number } | null = null;
  let map = false;
  w.fields(start, end, `value ${index}`, (f) => {
    if (f.field === 1 && f.wire === WIRE_BYTES) {
      if (f.length > MAX_TAG_BYTES) w.fail(`value ${index}: tag of ${f.length} bytes`);
      tag = w.text(f.offset, f.length, `value ${index}: tag`);
    } else if (f.field === 2 && f.wire === WIRE_BYTES) {
      tensor = { offset: f.offset, length: f.length };
    } else if (f.field === 3) {
      map = true;
    } else if (f.field <= 3) {
      w.fail(`value ${index}: field ${f.field} has wire type ${f.wire}`);
    }
  });
  if (tag === null) return w.fail(`value ${index} has no tag (the parameter name)`);
  const name: string = tag;
  if (map) w.fail('is a MapParameter (maptensor), which sftkit does not read', name);
  if (tensor === null) return w.fail('has no TensorProto', name);
  const t: { offset: number; length: number } = tensor;
  let type: string | null = null;
  const dims: number[] = [];
  let content: { offset: number; length: number } | null = null;
  w.fields(t.offset, t.offset + t.length, 'TensorProto', (f) => {
    if (f.field === 1) {
      if (f.wire === WIRE_VARINT) dims.push(f.value);
      else if (f.wire === WIRE_BYTES) {
        // A packed run of dims (proto3 style); protobuf readers accept either encoding.
        if (f.length > MAX_DIMS * 10) w.fail(`dims: a packed run of ${f.length} bytes`, name);
        const bytes = new Uint8Array(w.src.read(f.offset, f.length, `tensor ${name} dims`));
        for (let p = 0; p < bytes.length; ) {
          const v = decodeVarint(bytes, p);
          if (v === null || v === 'long') w.fail('dims: malformed packed varint', name);
          dims.push((v as { value: number }).value);
          p += (v as { length: number }).length;
        }
      } else w.fail(`dims has wire type ${f.wire}`, name);
      if (dims.length > MAX_DIMS) w.fail(`has more than ${MAX_DIMS} dims`, name);
    } else if (f.field === 2) {
      if (f.wire !== WIRE_BYTES || f.length > 64) w.fail('tensor_type is not a short string', name);
      type = w.text(f.offset, f.length, `tensor ${name}: tensor_type`, name);
    } else if (f.field === 3) {
      if (f.wire !== WIRE_BYTES) w.fail(`tensor_content has wire type ${f.wire}`, name);
      content = { offset: f.offset, length: f.length };
    }
  }, name);
  if (type === null) return w.fail('has no tensor_type', name);
  if (content === null) return w.fail('has no tensor_content', name);
  return { tag: name, type, dims, content };
}

/** Parses the Values of a checkpoint source (kept open for reads); every tensor's size is checked here. */
export function parseMindSporeCkpt(src: ByteSource): MindSporeCkpt {
  const w = new Walker(src);
  const values: RawValue[] = [];
  w.fields(0, src.size, 'Checkpoint', (f) => {
    if (f.field !== 1 || f.wire !== WIRE_BYTES) w.fail(`Checkpoint: unexpected field ${f.field} (wire type ${f.wire}) at byte ${f.offset}; a checkpoint holds only values`);
    if (values.length >= MAX_VALUES) w.fail(`more than ${MAX_VALUES} values`);
    values.push(readValue(w, f.offset, f.offset + f.length, values.length));
  });
  const tensors: CkptTensor[] = [];
  const others: Array<{ name: string; type: string }> = [];
  const seen = new Set<string>();
  for (let i = 0; i < values.length; ) {
    const first = values[i]!;
    // Consecutive Values of one tag are the slices of one tensor (serialization.py joins them the same way).
    let j = i + 1;
    while (j < values.length && values[j]!.tag === first.tag) j++;
    const name = first.tag;
    if (seen.has(name)) w.fail('appears twice, apart', name);
    seen.add(name);
    const slices = values.slice(i, j);
    i = j;
    if (NON_TENSOR_TYPES.has(first.type)) {
      others.push({ name, type: first.type });
      continue;
    }
    const dtype = MS_TENSOR_TYPES[first.type];
    if (dtype === undefined) w.fail(`has tensor_type ${describeValue(first.type)}, which sftkit does not read (it reads ${Object.keys(MS_TENSOR_TYPES).join(', ')})`, name);
    for (const s of slices) {
      if (s.type !== first.type || s.dims.length !== first.dims.length || s.dims.some((d, k) => d !== first.dims[k])) w.fail('has slices of different dtypes or dims', name);
    }
    const shape = first.dims.length === 1 && first.dims[0] === 0 ? [] : first.dims;
    const numel = numelOf(shape);
    if (numel === null) return w.fail(`dims ${describeValue(first.dims)} are not a valid shape`, name);
    const bytes = slices.reduce((n, s) => n + s.content.length, 0);
    if (bytes !== numel * DTYPE_BYTES[dtype!]) w.fail(`${first.type} x [${shape.join(', ')}] needs ${numel * DTYPE_BYTES[dtype!]} bytes but tensor_content holds ${bytes}`, name);
    tensors.push({ name, dtype: dtype!, shape, msType: first.type, chunks: slices.map((s) => s.content) });
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    path: src.name,
    tensors,
    others,
    get: (name) => byName.get(name),
    read(name) {
      const t = byName.get(name);
      if (t === undefined) return w.fail('no such tensor', name);
      if (t.chunks.length === 1) return src.read(t.chunks[0]!.offset, t.chunks[0]!.length, `tensor ${name}`);
      const out = new Uint8Array(t.chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of t.chunks) {
        out.set(src.read(c.offset, c.length, `tensor ${name}`), at);
        at += c.length;
      }
      return out;
    },
    close: () => src.close(),
  };
}

/** Opens a `.ckpt` file (confined like every weight file) and parses its Values. */
export function openMindSporeCkpt(path: string): MindSporeCkpt {
  const src = openFileSource(path);
  try {
    return parseMindSporeCkpt(src);
  } catch (err) {
    src.close();
    throw err;
  }
}

export interface CkptTensorSpec {
  name: string;
  dtype: WeightDtype;
  shape: number[];
}

/**
 * The bytes that precede one slice's content: `Checkpoint.value` (field 1) wrapping `Value { tag = 1;
 * tensor = 2 { dims = 1 (one varint each, as proto2 writes repeated int64); tensor_type = 2; tensor_content = 3 } }`,
 * fields in number order as protobuf's serializers write them.
 */
export function ckptValueHeader(spec: CkptTensorSpec, contentLength: number): Uint8Array {
  const msType = MS_NAME_OF[spec.dtype];
  if (msType === undefined) throw new FormatError(`tensor ${spec.name}: dtype ${spec.dtype} has no MindSpore checkpoint type`, { where: spec.name });
  const tensor = new ProtoWriter();
  for (const d of spec.shape) tensor.varint(1, d);
  tensor.string(2, msType).bytesHeader(3, contentLength);
  const tensorLength = tensor.byteLength + contentLength;
  const value = new ProtoWriter().string(1, spec.name).bytesHeader(2, tensorLength);
  const outer = new ProtoWriter().bytesHeader(1, value.byteLength + tensorLength);
  const out = new Uint8Array(outer.byteLength + value.byteLength + tensor.byteLength);
  out.set(outer.finish(), 0);
  out.set(value.finish(), outer.byteLength);
  out.set(tensor.finish(), outer.byteLength + value.byteLength);
  return out;
}

/**
 * Writes a `.ckpt` through a temp file next to `path` (fsync'd, renamed), one tensor at a time, each split into
 * Values of at most `chunkBytes` as MindSpore does; returns the file's sha256 and size.
 */
export function writeMindSporeCkpt(
  path: string,
  specs: readonly CkptTensorSpec[],
  bytesOf: (spec: CkptTensorSpec) => Uint8Array,
  opts: { chunkBytes?: number } = {},
): WrittenBytes {
  const chunkBytes = opts.chunkBytes ?? CKPT_CHUNK_BYTES;
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw new FormatError(`${path}: tensor ${s.name} given twice`, { where: `${path}: ${s.name}` });
    seen.add(s.name);
  }
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fd = openForWrite(tmp);
  const hash = createHash('sha256');
  let bytes = 0;
  const put = (b: Uint8Array): void => {
    writeAllSync(fd, b, path);
    hash.update(b);
    bytes += b.byteLength;
  };
  try {
    for (const spec of specs) {
      const data = bytesOf(spec);
      const numel = numelOf(spec.shape);
      if (numel === null || data.byteLength !== numel * DTYPE_BYTES[spec.dtype]) {
        throw new FormatError(`${path}: tensor ${spec.name} has ${data.byteLength} bytes for ${spec.dtype} x [${spec.shape.join(', ')}]`, { where: `${path}: ${spec.name}` });
      }
      // An empty tensor still gets one Value (its dims and type must be stored).
      for (let at = 0; at === 0 || at < data.byteLength; at += chunkBytes) {
        const chunk = data.subarray(at, Math.min(at + chunkBytes, data.byteLength));
        put(ckptValueHeader(spec, chunk.byteLength));
        put(chunk);
        if (data.byteLength === 0) break;
      }
    }
    syncAndClose(fd, path);
  } catch (err) {
    try {
      syncAndClose(fd, path);
    } catch {
      // The first error is the one to report.
    }
    rmSync(tmp, { force: true });
    throw err;
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw fileError(err, path, 'move into place');
  }
  return { sha256: hash.digest('hex'), bytes };
}
