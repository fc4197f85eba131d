// GGUF v3, the file format of llama.cpp and ollama: constants, a streaming writer (header first, then each
// tensor's data as it is produced) and a reader that checks every count, length and offset before trusting it.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/values, the
// tensor infos (name, u32 n_dims, u64 dims innermost first, u32 ggml type, u64 offset into the data
// section), zero padding to `general.alignment` (default 32), then the data section, each tensor's data
// starting at a multiple of the alignment.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { FormatError } from '../errors.ts';
import { type ByteSource, openFileSource } from './byte-source.ts';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml tensors have at most 4 dimensions. */
export const GGML_MAX_DIMS = 4;

/** Metadata value types, by their numbers in the file. */
export const GGUF_VALUE_TYPES = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9, uint64: 10, int64: 11, float64: 12,
} as const;
export type GgufValueTypeName = keyof typeof GGUF_VALUE_TYPES;
export type GgufScalarTypeName = Exclude<GgufValueTypeName, 'array'>;
export type GgufScalar = number | boolean | string;

export type GgufValue =
  | { type: GgufScalarTypeName; value: GgufScalar }
  | { type: 'array'; itemType: GgufScalarTypeName; value: GgufScalar[] };

/** Fixed sizes of the numeric value types (strings are a u64 length plus bytes). */
const SCALAR_BYTES: Record<Exclude<GgufScalarTypeName, 'string'>, number> = {
  uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, bool: 1, uint64: 8, int64: 8, float64: 8,
};

const TYPE_BY_NUMBER = new Map<number, GgufValueTypeName>(Object.entries(GGUF_VALUE_TYPES).map(([k, v]) => [v, k as GgufValueTypeName]));

/** ggml tensor types this project reads or writes: elements per block and bytes per block. */
export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, blockBytes: 4 },
  F16: { id: 1, blockSize: 1, blockBytes: 2 },
  Q4_0: { id: 2, blockSize: 32, blockBytes: 18 },
  Q4_1: { id: 3, blockSize: 32, blockBytes: 20 },
  Q5_0: { id: 6, blockSize: 32, blockBytes: 22 },
  Q5_1: { id: 7, blockSize: 32, blockBytes: 24 },
  // A Q8_0 block: an f16 scale, then 32 int8 values.
  Q8_0: { id: 8, blockSize: 32, blockBytes: 34 },
  I8: { id: 24, blockSize: 1, blockBytes: 1 },
  I16: { id: 25, blockSize: 1, blockBytes: 2 },
  I32: { id: 26, blockSize: 1, blockBytes: 4 },
  I64: { id: 27, blockSize: 1, blockBytes: 8 },
  F64: { id: 28, blockSize: 1, blockBytes: 8 },
  BF16: { id: 30, blockSize: 1, blockBytes: 2 },
} as const;
export type GgmlTypeName = keyof typeof GGML_TYPES;
const GGML_BY_ID = new Map<number, GgmlTypeName>(Object.entries(GGML_TYPES).map(([k, v]) => [v.id, k as GgmlTypeName]));

export interface GgufTensorInfo {
  name: string;
  /** Shape outermost first, as PyTorch and safetensors write it (the file stores it reversed). */
  shape: number[];
  type: GgmlTypeName;
}

/** Bytes of a tensor's data; the innermost dimension must be a whole number of blocks. */
export function ggmlTensorBytes(t: GgufTensorInfo): number {
  const { blockSize, blockBytes } = GGML_TYPES[t.type];
  const inner = t.shape[t.shape.length - 1] ?? 1;
  if (inner % blockSize !== 0) {
    throw new FormatError(`tensor ${t.name}: rows of ${inner} elements are not whole ${t.type} blocks of ${blockSize}`, { where: t.name });
  }
  let n = 1;
  for (const d of t.shape) n *= d;
  const bytes = (n / blockSize) * blockBytes;
  if (!Number.isSafeInteger(bytes)) throw new FormatError(`tensor ${t.name}: shape [${t.shape.join(', ')}] is too large`, { where: t.name });
  return bytes;
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Appends little-endian values to a growing buffer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void { this.reserve(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.reserve(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.reserve(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.reserve(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.reserve(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.reserve(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.reserve(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number): void { this.reserve(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number): void { this.reserve(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  bytes(b: Uint8Array): void { this.reserve(b.byteLength); this.buf.set(b, this.length); this.length += b.byteLength; }
  str(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.byteLength);
    this.bytes(b);
  }
  zeros(n: number): void { this.reserve(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }
  result(): Uint8Array { return this.buf.slice(0, this.length); }
}
const utf8 = new TextEncoder();

function checkScalar(key: string, type: GgufScalarTypeName, v: GgufScalar): void {
  const bad = (): never => {
    throw new FormatError(`GGUF key ${key}: ${JSON.stringify(v)} is not a ${type}`, { where: key });
  };
  if (type === 'string') return void (typeof v !== 'string' && bad());
  if (type === 'bool') return void (typeof v !== 'boolean' && bad());
  if (typeof v !== 'number') return bad();
  if (type === 'float32' || type === 'float64') return;
  const ranges: Record<string, [number, number]> = {
    uint8: [0, 0xff], int8: [-0x80, 0x7f], uint16: [0, 0xffff], int16: [-0x8000, 0x7fff], uint32: [0, 0xffffffff], int32: [-0x80000000, 0x7fffffff],
    uint64: [0, Number.MAX_SAFE_INTEGER], int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  };
  const [lo, hi] = ranges[type]!;
  if (!Number.isInteger(v) || v < lo || v > hi) bad();
}

function writeScalar(w: ByteWriter, type: GgufScalarTypeName, v: GgufScalar): void {
  switch (type) {
    case 'uint8': return w.u8(v as number);
    case 'int8': return w.i8(v as number);
    case 'uint16': return w.u16(v as number);
    case 'int16': return w.i16(v as number);
    case 'uint32': return w.u32(v as number);
    case 'int32': return w.i32(v as number);
    case 'float32': return w.f32(v as number);
    case 'bool': return w.u8(v ? 1 : 0);
    case 'string': return w.str(v as string);
    case 'uint64': return w.u64(v as number);
    case 'int64': return w.i64(v as number);
    case 'float64': return w.f64(v as number);
  }
}

export interface GgufHeader {
  /** Everything before the data section, padding included. */
  bytes: Uint8Array;
  /** Offset of each tensor's data from the start of the data section, in `tensors` order. */
  offsets: number[];
  /** Size of each tensor's data (without padding). */
  sizes: number[];
  /** Total file size. */
  fileBytes: number;
}

/**
 * Encodes the header of a GGUF file: metadata in the order given (a Map keeps insertion order), then the
 * tensor infos with offsets laid out back to back at `alignment`. `general.alignment`, when present, must
 * agree with the alignment used.
 */
export function encodeGgufHeader(metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensorInfo[], alignment = GGUF_DEFAULT_ALIGNMENT): GgufHeader {
  const declared = metadata.get('general.alignment');
  if (declared !== undefined && (declared.type !== 'uint32' || declared.value !== alignment)) {
    throw new FormatError(`GGUF key general.alignment: ${JSON.stringify(declared.value)} does not match the alignment ${alignment} used to write the file`, { where: 'general.alignment' });
  }
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new FormatError(`GGUF alignment ${alignment} is not a power of two`, { where: 'general.alignment' });
  }
  const w = new ByteWriter();
  w.bytes(utf8.encode(GGUF_MAGIC));
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, v] of metadata) {
    w.str(key);
    w.u32(GGUF_VALUE_TYPES[v.type]);
    if (v.type === 'array') {
      w.u32(GGUF_VALUE_TYPES[v.itemType]);
      w.u64(v.value.length);
      for (const item of v.value) {
        checkScalar(key, v.itemType, item);
        writeScalar(w, v.itemType, item);
      }
    } else {
      checkScalar(key, v.type, v.value);
      writeScalar(w, v.type, v.value);
    }
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new FormatError(`GGUF tensor ${t.name} is given twice`, { where: t.name });
    names.add(t.name);
    if (t.shape.length === 0 || t.shape.length > GGML_MAX_DIMS || t.shape.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
      throw new FormatError(`GGUF tensor ${t.name}: shape [${t.shape.join(', ')}] must have 1 to ${GGML_MAX_DIMS} positive dimensions`, { where: t.name });
    }
    const size = ggmlTensorBytes(t);
    w.str(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]!); // ggml's ne[0] is the innermost dimension
    w.u32(GGML_TYPES[t.type].id);
    w.u64(offset);
    offsets.push(offset);
    sizes.push(size);
    offset = alignUp(offset + size, alignment);
  }
  w.zeros(alignUp(w.length, alignment) - w.length);
  const bytes = w.result();
  const last = sizes.length === 0 ? 0 : offsets[offsets.length - 1]! + sizes[sizes.length - 1]!;
  return { bytes, offsets, sizes, fileBytes: bytes.byteLength + last };
}

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done);
}

export interface WriteGgufOptions {
  metadata: ReadonlyMap<string, GgufValue>;
  tensors: readonly GgufTensorInfo[];
  alignment?: number;
  /**
   * Produces one tensor's data, in order, by calling `write` with consecutive chunks (so a tensor never has to
   * exist whole in its output type); the chunks must add up to exactly the tensor's size.
   */
  writeTensor: (tensor: GgufTensorInfo, write: (chunk: Uint8Array) => void) => void;
}

/** Writes a GGUF file atomically (temp file, fsync, rename); returns its size in bytes. */
export function writeGguf(path: string, o: WriteGgufOptions): number {
  const alignment = o.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const header = encodeGgufHeader(o.metadata, o.tensors, alignment);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeAll(fd, header.bytes);
    let pos = 0; // within the data section
    o.tensors.forEach((t, i) => {
      const start = header.offsets[i]!;
      if (start > pos) writeAll(fd, new Uint8Array(start - pos));
      pos = start;
      let written = 0;
      const size = header.sizes[i]!;
      o.writeTensor(t, (chunk) => {
        if (written + chunk.byteLength > size) throw new FormatError(`${path}: tensor ${t.name} produced more than its ${size} bytes`, { where: t.name });
        writeAll(fd, chunk);
        written += chunk.byteLength;
      });
      if (written !== size) throw new FormatError(`${path}: tensor ${t.name} produced ${written} of its ${size} bytes`, { where: t.name });
      pos += size;
    });
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    try { closeSync(fd); } catch { /* already closed */ }
    rmSync(tmp, { force: true });
    throw err;
  }
  return header.fileBytes;
}

// ---- reader ----

export interface GgufTensorEntry extends GgufTensorInfo {
  /** Absolute file offset of the data. */
  begin: number;
  bytes: number;
}

export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly alignment: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorEntry[];
  /** Offset of the data section. */
  readonly dataStart: number;
  read(name: string): Uint8Array;
  close(): void;
}

// Caps that keep a hostile header from making the reader allocate or loop without bound.
const MAX_STRING_BYTES = 1 << 26;
const MAX_ITEMS = 1 << 28;

/** Reads a header through a ByteSource in bounded pieces; every failure names the file and what was read. */
class HeaderReader {
  pos = 0;
  constructor(private readonly src: ByteSource) {}
  fail(msg: string, where?: string): never {
    throw new FormatError(`${this.src.name}: ${msg}`, { where: where === undefined ? this.src.name : `${this.src.name}: ${where}`, hint: 'the file is truncated, corrupt or not GGUF' });
  }
  private take(n: number, what: string): DataView {
    if (this.pos + n > this.src.size) this.fail(`${what} needs bytes [${this.pos}, ${this.pos + n}) but the file has ${this.src.size} bytes`);
    const b = this.src.read(this.pos, n, what);
    this.pos += n;
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  u32(what: string): number { return this.take(4, what).getUint32(0, true); }
  u64(what: string): number {
    const v = this.take(8, what).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} is ${v}, larger than this reader accepts`);
    return Number(v);
  }
  str(what: string): string {
    const n = this.u64(`${what} length`);
    if (n > MAX_STRING_BYTES) this.fail(`${what} claims ${n} bytes (more than the ${MAX_STRING_BYTES}-byte cap)`);
    const dv = this.take(n, what);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(dv.buffer, dv.byteOffset, n));
    } catch {
      return this.fail(`${what} is not valid UTF-8`);
    }
  }
  scalar(type: GgufScalarTypeName, what: string): GgufScalar {
    if (type === 'string') return this.str(what);
    const dv = this.take(SCALAR_BYTES[type], what);
    switch (type) {
      case 'uint8': return dv.getUint8(0);
      case 'int8': return dv.getInt8(0);
      case 'uint16': return dv.getUint16(0, true);
      case 'int16': return dv.getInt16(0, true);
      case 'uint32': return dv.getUint32(0, true);
      case 'int32': return dv.getInt32(0, true);
      case 'float32': return dv.getFloat32(0, true);
      case 'float64': return dv.getFloat64(0, true);
      case 'bool': {
        const b = dv.getUint8(0);
        if (b > 1) this.fail(`${what} is a bool of value ${b}`);
        return b === 1;
      }
      case 'uint64':
      case 'int64': {
        const v = type === 'uint64' ? dv.getBigUint64(0, true) : dv.getBigInt64(0, true);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) this.fail(`${what} is ${v}, outside the safe integer range`);
        return Number(v);
      }
    }
  }
  valueType(what: string): GgufValueTypeName {
    const n = this.u32(what);
    const t = TYPE_BY_NUMBER.get(n);
    if (t === undefined) this.fail(`${what}: unknown value type ${n}`);
    return t;
  }
}

/** Parses and checks a GGUF header (the source stays open for tensor reads). */
export function parseGguf(src: ByteSource): GgufFile {
  const r: HeaderReader = new HeaderReader(src);
  if (src.size < 24) r.fail(`file is ${src.size} bytes, too short for a GGUF header`);
  const magic = new TextDecoder().decode(src.read(0, 4, 'magic'));
  r.pos = 4;
  if (magic !== GGUF_MAGIC) r.fail(`magic is ${JSON.stringify(magic)}, not "GGUF"`);
  const version = r.u32('version');
  if (version !== GGUF_VERSION) {
    throw new FormatError(`${src.name}: GGUF version ${version} is not supported (this reader reads version ${GGUF_VERSION})`, { where: src.name, hint: 'convert the file again with a current llama.cpp or sftkit' });
  }
  const nTensors = r.u64('tensor count');
  const nKv = r.u64('metadata count');
  // Every key/value takes at least 12 bytes and every tensor info at least 28, which bounds honest counts.
  if (nKv * 12 + nTensors * 28 > src.size) r.fail(`header claims ${nKv} keys and ${nTensors} tensors, more than ${src.size} bytes can hold`);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = r.str(`key ${i}`);
    if (metadata.has(key)) r.fail(`key ${key} appears twice`, key);
    const type = r.valueType(`key ${key}: type`);
    if (type === 'array') {
      const itemType = r.valueType(`key ${key}: item type`);
      if (itemType === 'array') r.fail(`key ${key}: arrays of arrays are not supported`, key);
      const n = r.u64(`key ${key}: item count`);
      const minBytes = itemType === 'string' ? 8 : SCALAR_BYTES[itemType];
      if (n > MAX_ITEMS || r.pos + n * minBytes > src.size) r.fail(`key ${key}: ${n} items cannot fit in the file`, key);
      const value: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) value[j] = r.scalar(itemType, `key ${key}[${j}]`);
      metadata.set(key, { type, itemType, value });
    } else {
      metadata.set(key, { type, value: r.scalar(type, `key ${key}`) });
    }
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const a = metadata.get('general.alignment');
  if (a !== undefined) {
    if (a.type !== 'uint32' || typeof a.value !== 'number' || a.value === 0 || (a.value & (a.value - 1)) !== 0) r.fail(`general.alignment must be a power-of-two uint32, got ${JSON.stringify(a.value)}`, 'general.alignment');
    alignment = a.value;
  }
  const infos: Array<GgufTensorInfo & { offset: number }> = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = r.str(`tensor ${i} name`);
    if (names.has(name)) r.fail(`tensor ${name} appears twice`, name);
    names.add(name);
    const nDims = r.u32(`tensor ${name}: n_dims`);
    if (nDims < 1 || nDims > GGML_MAX_DIMS) r.fail(`tensor ${name}: ${nDims} dimensions (1 to ${GGML_MAX_DIMS} allowed)`, name);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const n = r.u64(`tensor ${name}: dim ${d}`);
      if (n === 0) r.fail(`tensor ${name}: dimension ${d} is 0`, name);
      ne.push(n);
    }
    const typeId = r.u32(`tensor ${name}: type`);
    const type = GGML_BY_ID.get(typeId);
    if (type === undefined) r.fail(`tensor ${name}: ggml type ${typeId} is not one this reader knows`, name);
    const offset = r.u64(`tensor ${name}: offset`);
    if (offset % alignment !== 0) r.fail(`tensor ${name}: offset ${offset} is not a multiple of the alignment ${alignment}`, name);
    infos.push({ name, shape: ne.reverse(), type, offset });
  }
  const dataStart = alignUp(r.pos, alignment);
  const tensors: GgufTensorEntry[] = [];
  for (const t of infos) {
    let bytes: number;
    try {
      bytes = ggmlTensorBytes(t);
    } catch (err) {
      return r.fail((err as Error).message, t.name);
    }
    const begin = dataStart + t.offset;
    if (begin + bytes > src.size) r.fail(`tensor ${t.name}: data [${begin}, ${begin + bytes}) runs past the end of the file (${src.size} bytes)`, t.name);
    tensors.push({ name: t.name, shape: t.shape, type: t.type, begin, bytes });
  }
  const sorted = [...tensors].sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.begin + sorted[i - 1]!.bytes) r.fail(`tensor ${sorted[i]!.name}: data overlaps tensor ${sorted[i - 1]!.name}`, sorted[i]!.name);
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    path: src.name,
    version,
    alignment,
    metadata,
    tensors,
    dataStart,
    read(name) {
      const t = byName.get(name);
      if (t === undefined) throw new FormatError(`${src.name}: no tensor ${name}`, { where: `${src.name}: ${name}` });
      return src.read(t.begin, t.bytes, `tensor ${name}`);
    },
    close: () => src.close(),
  };
}

export function openGguf(path: string): GgufFile {
  const src = openFileSource(path);
  try {
    return parseGguf(src);
  } catch (err) {
    src.close();
    throw err;
  }
}
