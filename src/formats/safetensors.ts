// safetensors reader: 8-byte little-endian header length, JSON header, then the data section. The header is
// checked in full (size cap, dtypes, shapes, bounds, overlaps, duplicates) before any tensor is read.
import { FormatError, describeValue } from '../errors.ts';
import { openFileSource, type ByteSource } from './byte-source.ts';
import { DTYPE_BYTES, isWeightDtype, numelOf, type WeightDtype } from './dtypes.ts';
import { duplicateKeys } from './json-duplicates.ts';

/** Largest header we accept (the reference implementation's cap too); a 7B model's header is ~30 KB. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  name: string;
  dtype: WeightDtype;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** In data order. */
  readonly tensors: SafetensorsEntry[];
  get(name: string): SafetensorsEntry | undefined;
  /** The tensor's raw little-endian bytes. */
  read(name: string): Uint8Array;
  close(): void;
}

function fail(src: ByteSource, msg: string, tensor?: string): never {
  const where = tensor === undefined ? src.name : `${src.name}: tensor ${tensor}`;
  throw new FormatError(`${where}: ${msg}`, { where, hint: 'the safetensors file is corrupt or not a safetensors file' });
}

function parseEntry(src: ByteSource, name: string, raw: unknown, dataStart: number, dataSize: number): SafetensorsEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(src, 'header entry is not an object', name);
  const e = raw as Record<string, unknown>;
  if (!isWeightDtype(e['dtype'])) fail(src, `unsupported dtype ${describeValue(e['dtype'])}`, name);
  const dtype = e['dtype'];
  const shape = e['shape'];
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && (s as number) >= 0)) {
    fail(src, `shape ${describeValue(shape)} is not a list of non-negative integers`, name);
  }
  const offs = e['data_offsets'];
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
    fail(src, `data_offsets ${describeValue(offs)} is not a pair of non-negative integers`, name);
  }
  const [b, en] = offs as [number, number];
  if (b > en) fail(src, `data_offsets [${b}, ${en}] run backwards`, name);
  if (en > dataSize) fail(src, `data_offsets [${b}, ${en}] run past the data section (${dataSize} bytes)`, name);
  const numel = numelOf(shape as number[]);
  if (numel === null) fail(src, `shape ${describeValue(shape)} is absurdly large`, name);
  if (numel * DTYPE_BYTES[dtype] !== en - b) {
    fail(src, `dtype ${dtype} x shape [${(shape as number[]).join(', ')}] needs ${numel * DTYPE_BYTES[dtype]} bytes but data_offsets span ${en - b}`, name);
  }
  return { name, dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + en };
}

/** Parses and checks the header of a safetensors source (the source stays open for reads). */
export function parseSafetensors(src: ByteSource): SafetensorsFile {
  if (src.size < 8) fail(src, `file is ${src.size} bytes, too short for the 8-byte header length`);
  const lenBytes = src.read(0, 8, 'header length');
  const len = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (len > BigInt(MAX_HEADER_BYTES)) fail(src, `header claims ${len} bytes (more than the ${MAX_HEADER_BYTES}-byte cap)`);
  const headerLen = Number(len);
  if (8 + headerLen > src.size) fail(src, `header claims ${headerLen} bytes but only ${src.size - 8} follow the length`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(src.read(8, headerLen, 'header'));
  } catch {
    fail(src, 'header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    fail(src, `invalid JSON header (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail(src, 'header is not a JSON object');
  const dups = duplicateKeys(text, 1);
  if (dups.length > 0) fail(src, `duplicate tensor name in header`, dups[0]);

  const dataStart = 8 + headerLen;
  const dataSize = src.size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(src, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(src, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    tensors.push(parseEntry(src, name, raw, dataStart, dataSize));
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < tensors.length; i++) {
    const prev = tensors[i - 1]!;
    const cur = tensors[i]!;
    if (cur.begin < prev.end) fail(src, `bytes overlap those of tensor ${prev.name}`, cur.name);
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    path: src.name,
    metadata,
    tensors,
    get: (name) => byName.get(name),
    read(name) {
      const t = byName.get(name);
      if (t === undefined) fail(src, 'no such tensor', name);
      return src.read(t.begin, t.end - t.begin, `tensor ${name}`);
    },
    close: () => src.close(),
  };
}

export function openSafetensors(path: string): SafetensorsFile {
  const src = openFileSource(path);
  try {
    return parseSafetensors(src);
  } catch (err) {
    src.close();
    throw err;
  }
}
