// PyTorch `.bin` state dicts (torch.save's zip format): the pickle is read by our allowlist unpickler, and each
// tensor is read from its storage entry in place, honouring shared storages, storage offsets and strides.
import { DTYPE_NAMES, DTYPE_TABLE } from '../dtype.ts';
import { FormatError, describeValue } from '../errors.ts';
import { openFileSource, type ByteSource } from './byte-source.ts';
import { DTYPE_BYTES, numelOf, type WeightDtype } from './dtypes.ts';
import { unpickle, type PickleGlobal, type PyDict } from './pickle.ts';
import { looksLikeZip, openZip, type ZipArchive, type ZipEntry } from './zip.ts';
import type { TensorFile } from './tensor-file.ts';

/** The pickle of a 7B state dict is ~100 KB; anything near this is not a state dict. */
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

/** torch.<X>Storage (the legacy storage classes torch.save pickles) -> dtype, from src/dtype.ts. */
const STORAGE_DTYPES: ReadonlyMap<string, WeightDtype> = new Map(DTYPE_NAMES.map((d) => [DTYPE_TABLE[d].torchStorage, DTYPE_TABLE[d].safetensors]));

interface StorageType { readonly qualifiedName: string; readonly storageDtype: WeightDtype }
interface StorageRef { readonly kind: 'storage'; dtype: WeightDtype; numel: number; entry: ZipEntry; key: string }
interface TensorRef { readonly kind: 'tensor'; storage: StorageRef; offset: number; shape: number[]; strides: number[] }

export interface TorchTensorEntry {
  name: string;
  dtype: WeightDtype;
  shape: number[];
  strides: number[];
  /** Element offset into the storage. */
  storageOffset: number;
  /** Storage key (tensors sharing a key share bytes). */
  storageKey: string;
}

export interface TorchBinFile extends TensorFile {
  readonly tensors: readonly TorchTensorEntry[];
}

function isTensorRef(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as TensorRef).kind === 'tensor';
}

function intList(v: unknown): number[] | null {
  return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0) ? (v as number[]) : null;
}

/** The globals a state dict needs; every other name is refused before anything uses it. */
function makeResolver(file: string, archive: ZipArchive, prefix: string) {
  const fail = (msg: string): never => {
    throw new FormatError(`${file}: ${msg}`, { where: file, hint: 'the checkpoint is corrupt or not a PyTorch state dict' });
  };
  const fn = (qualifiedName: string, call: (args: unknown[]) => unknown): PickleGlobal => ({ qualifiedName, call });
  const rebuildTensor = fn('torch._utils._rebuild_tensor_v2', (args) => {
    const [storage, offset, size, stride] = args;
    if (typeof storage !== 'object' || storage === null || (storage as StorageRef).kind !== 'storage') fail('_rebuild_tensor_v2 without a storage');
    const shape = intList(size);
    const strides = intList(stride);
    if (!Number.isSafeInteger(offset) || (offset as number) < 0 || shape === null || strides === null || shape.length !== strides.length) {
      fail(`_rebuild_tensor_v2 with a bad offset/size/stride (${describeValue([offset, size, stride], 120)})`);
    }
    return { kind: 'tensor', storage: storage as StorageRef, offset: offset as number, shape: shape!, strides: strides! } satisfies TensorRef;
  });
  const rebuildParameter = (name: string): PickleGlobal =>
    fn(`torch._utils.${name}`, (args) => {
      if (!isTensorRef(args[0])) fail(`${name} of something that is not a tensor`);
      return args[0];
    });
  const orderedDict = fn('collections.OrderedDict', (args) => {
    if (args.length !== 0) fail('OrderedDict called with arguments');
    return new Map();
  });
  const globals = new Map<string, PickleGlobal>([
    ['collections.OrderedDict', orderedDict],
    ['torch._utils._rebuild_tensor_v2', rebuildTensor],
    ['torch._utils._rebuild_parameter', rebuildParameter('_rebuild_parameter')],
    ['torch._utils._rebuild_parameter_with_state', rebuildParameter('_rebuild_parameter_with_state')],
  ]);
  for (const [name, dtype] of STORAGE_DTYPES) {
    globals.set(`torch.${name}`, { qualifiedName: `torch.${name}`, storageDtype: dtype } as StorageType);
  }
  for (const name of DTYPE_NAMES) globals.set(`torch.${name}`, { qualifiedName: `torch.${name}` });

  const storages = new Map<string, StorageRef>();
  return {
    resolveGlobal(module: string, name: string): PickleGlobal {
      const q = `${module}.${name}`;
      const g = globals.get(q);
      if (g === undefined) {
        throw new FormatError(`${file}: refusing pickle global '${q}': only the globals of a plain state dict are allowed (nothing was executed)`, {
          where: `${file}: ${q}`,
          hint: 'save the model with model.state_dict() (or save_pretrained), not a pickled object',
        });
      }
      return g;
    },
    persistentLoad(pid: unknown): unknown {
      if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== 'storage') fail(`unknown persistent id ${describeValue(pid)}`);
      const [, type, key, , numel] = pid as unknown[];
      const dtype = (type as Partial<StorageType> | null)?.storageDtype;
      if (dtype === undefined) fail(`persistent id with a storage type that is not a torch *Storage`);
      if (typeof key !== 'string' || !Number.isSafeInteger(numel) || (numel as number) < 0) fail(`bad storage reference ${describeValue(pid)}`);
      const k = key as string;
      const cached = storages.get(k);
      if (cached !== undefined) return cached;
      const entry = archive.entries.get(`${prefix}data/${k}`);
      if (entry === undefined) fail(`storage ${k} is missing from the archive (${prefix}data/${k})`);
      if (entry!.method !== 0) fail(`storage ${k} is compressed; torch.save writes storages uncompressed`);
      const bytes = (numel as number) * DTYPE_BYTES[dtype!];
      if (bytes > entry!.size) fail(`storage ${k} claims ${bytes} bytes but its entry holds ${entry!.size}`);
      const ref: StorageRef = { kind: 'storage', dtype: dtype!, numel: numel as number, entry: entry!, key: k };
      storages.set(k, ref);
      return ref;
    },
  };
}

function legacyError(path: string): FormatError {
  return new FormatError(`${path}: legacy (non-zip) torch.save format is not supported`, {
    where: path,
    hint: 're-save with a newer PyTorch: torch.save(torch.load(path), path) with PyTorch >= 1.6',
  });
}

/** Reads a torch.save zip from a byte source (the source is closed by the returned file's close()). */
export function parseTorchBin(src: ByteSource): TorchBinFile {
  const path = src.name;
  if (!looksLikeZip(src)) {
    // Legacy torch.save files start with a pickle (PROTO opcode) holding the magic number.
    if (src.size >= 2 && src.read(0, 1, 'magic')[0] === 0x80) throw legacyError(path);
    throw new FormatError(`${path}: not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)`, { where: path });
  }
  const archive = openZip(src);
  const pkl = [...archive.entries.values()].find((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (pkl === undefined) throw new FormatError(`${path}: zip archive has no <name>/data.pkl: not a torch.save checkpoint`, { where: path });
  const prefix = pkl.name.slice(0, -'data.pkl'.length);
  const order = archive.entries.get(`${prefix}byteorder`);
  if (order !== undefined) {
    const text = new TextDecoder().decode(archive.readEntry(order, 16));
    if (text !== 'little') throw new FormatError(`${path}: saved with byte order '${text.slice(0, 16)}'; only little-endian checkpoints are supported`, { where: path });
  }
  const resolver = makeResolver(path, archive, prefix);
  const root = unpickle(archive.readEntry(pkl, MAX_PICKLE_BYTES), { file: `${path}: ${pkl.name}`, ...resolver });
  if (!(root instanceof Map)) throw new FormatError(`${path}: the pickle does not hold a state dict (a dict of tensors)`, { where: path });

  const tensors: TorchTensorEntry[] = [];
  const refs = new Map<string, TensorRef>();
  for (const [name, value] of root as PyDict) {
    if (typeof name !== 'string') throw new FormatError(`${path}: state dict key ${describeValue(name)} is not a string`, { where: path });
    const where = `${path}: tensor ${name}`;
    if (!isTensorRef(value)) throw new FormatError(`${where}: value is not a tensor`, { where });
    const numel = numelOf(value.shape);
    if (numel === null) throw new FormatError(`${where}: shape [${value.shape.join(', ')}] is absurdly large`, { where });
    if (numel > 0) {
      let last = value.offset;
      value.shape.forEach((s, i) => (last += (s - 1) * value.strides[i]!));
      if (!Number.isSafeInteger(last) || last >= value.storage.numel) {
        throw new FormatError(`${where}: offset ${value.offset}, shape [${value.shape.join(', ')}], strides [${value.strides.join(', ')}] reach past its storage of ${value.storage.numel} elements`, { where });
      }
      // Zero or overlapping strides let a few stored bytes claim gigabytes once gathered; a state dict's
      // weights never repeat elements, so a tensor may hold no more elements than its storage (whose size
      // was checked against the zip entry, so reading is bounded by the file).
      if (numel > value.storage.numel) {
        throw new FormatError(`${where}: shape [${value.shape.join(', ')}] holds ${numel} elements but its storage has ${value.storage.numel} (zero or overlapping strides [${value.strides.join(', ')}]); such views are not weights`, { where });
      }
    }
    refs.set(name, value);
    tensors.push({ name, dtype: value.storage.dtype, shape: value.shape, strides: value.strides, storageOffset: value.offset, storageKey: value.storage.key });
  }

  return {
    path,
    tensors,
    read(name: string): Uint8Array {
      const t = refs.get(name);
      if (t === undefined) throw new FormatError(`${path}: no tensor ${name}`, { where: `${path}: tensor ${name}` });
      return readStrided(archive, t, `tensor ${name}`);
    },
    close: () => src.close(),
  };
}

/** Gathers a (possibly strided) tensor into contiguous row-major bytes, reading only the span it touches. */
function readStrided(archive: ZipArchive, t: TensorRef, what: string): Uint8Array {
  const elem = DTYPE_BYTES[t.storage.dtype];
  const numel = numelOf(t.shape) ?? 0;
  if (numel === 0) return new Uint8Array(0);
  const base = archive.dataOffset(t.storage.entry);
  let contiguous = true;
  let expect = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    if (t.shape[i]! !== 1 && t.strides[i]! !== expect) contiguous = false;
    expect *= t.shape[i]!;
  }
  if (contiguous) return archive.source.read(base + t.offset * elem, numel * elem, what);
  let span = 1;
  t.shape.forEach((s, i) => (span += (s - 1) * t.strides[i]!));
  const src = archive.source.read(base + t.offset * elem, span * elem, what);
  const out = new Uint8Array(numel * elem);
  const rank = t.shape.length;
  const idx = new Array<number>(rank).fill(0);
  let srcElem = 0;
  for (let o = 0; o < numel; o++) {
    out.set(src.subarray(srcElem * elem, srcElem * elem + elem), o * elem);
    // Advance the row-major index, updating the source element offset incrementally.
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]! += 1;
      srcElem += t.strides[d]!;
      if (idx[d]! < t.shape[d]!) break;
      srcElem -= t.strides[d]! * t.shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

export function openTorchBin(path: string): TorchBinFile {
  const src = openFileSource(path);
  try {
    return parseTorchBin(src);
  } catch (err) {
    src.close();
    throw err;
  }
}
