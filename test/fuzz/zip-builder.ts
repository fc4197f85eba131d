// Builds the files the .bin target needs: a stored (uncompressed) zip around entries, as torch.save writes
// it, and hostile pickles (memo cycles, deep nesting, stride-0 views, huge element counts) over its storages.
import { int, pick, type Rng } from './rng.ts';

/**
 * A zip of stored entries with local headers, a central directory and an end record (CRCs left 0). An entry
 * with `deflatedSize` is written as deflated: its data are the compressed bytes, `deflatedSize` the size claimed.
 */
export function storedZip(entries: ReadonlyArray<{ name: string; data: Uint8Array; deflatedSize?: number }>): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    const method = e.deflatedSize === undefined ? 0 : 8;
    const size = e.deflatedSize ?? e.data.byteLength;
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(e.data.byteLength, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.byteLength, 26);
    parts.push(local, name, Buffer.from(e.data));
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(method, 10);
    cd.writeUInt32LE(e.data.byteLength, 20);
    cd.writeUInt32LE(size, 24);
    cd.writeUInt16LE(name.byteLength, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, name);
    offset += 30 + name.byteLength + e.data.byteLength;
  }
  const cdBytes = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdBytes.byteLength, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cdBytes, end]);
}

/** Pickle opcodes, protocol 2, written the way torch.save writes a state dict. */
const P = {
  str(s: string): Buffer {
    const b = Buffer.from(s);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.byteLength);
    return Buffer.concat([Buffer.from('X'), len, b]);
  },
  int(n: number | bigint): Buffer {
    const v = BigInt(n);
    if (v >= -(2n ** 31n) && v < 2n ** 31n) {
      const b = Buffer.alloc(5);
      b.write('J');
      b.writeInt32LE(Number(v), 1);
      return b;
    }
    const b = Buffer.alloc(10);
    b[0] = 0x8a; // LONG1
    b[1] = 8;
    b.writeBigInt64LE(BigInt.asIntN(64, v), 2);
    return b;
  },
  tuple(items: Buffer[]): Buffer {
    return Buffer.concat([Buffer.from('('), ...items, Buffer.from('t')]);
  },
  global(module: string, name: string): Buffer {
    return Buffer.from(`c${module}\n${name}\n`);
  },
};

const HOSTILE_SIZES = [0, 1, 2, 3, 16, 1 << 15, 1 << 16, 1 << 20, 2 ** 31, 2 ** 32, 2 ** 34, 2 ** 53 - 1];
const HOSTILE_STRIDES = [0, 0, 1, 2, 16, 1 << 20, 2 ** 40, -1];

export interface PickledTensor {
  name: string;
  storageType: string;
  storageKey: string;
  /** Elements the storage claims. */
  storageNumel: number;
  offset: number;
  size: number[];
  stride: number[];
}

/** A state dict pickle as torch.save writes it: {name: _rebuild_tensor_v2(storage, offset, size, stride, ...)}. */
export function stateDictPickle(tensors: readonly PickledTensor[]): Buffer {
  const items = tensors.map((t) => {
    const pid = P.tuple([P.str('storage'), P.global('torch', t.storageType), P.str(t.storageKey), P.str('cpu'), P.int(t.storageNumel)]);
    const tensor = Buffer.concat([
      P.global('torch._utils', '_rebuild_tensor_v2'),
      P.tuple([Buffer.concat([pid, Buffer.from('Q')]), P.int(t.offset), P.tuple(t.size.map(P.int)), P.tuple(t.stride.map(P.int)), Buffer.from([0x89]), Buffer.concat([P.global('collections', 'OrderedDict'), Buffer.from(')R')])]),
      Buffer.from('R'),
    ]);
    return Buffer.concat([P.str(t.name), tensor]);
  });
  return Buffer.concat([Buffer.from([0x80, 0x02, 0x7d, 0x28]), ...items, Buffer.from('u.')]);
}

/** A state dict of one tensor over `storageKey` with hostile numel, shape, strides and offset. */
function hostileTensorPickle(r: Rng, storageKey: string): Buffer {
  const rank = int(r, 4);
  return stateDictPickle([{
    name: 'model.weight',
    storageType: pick(r, ['FloatStorage', 'HalfStorage', 'BFloat16Storage', 'LongStorage']),
    storageKey,
    storageNumel: pick(r, HOSTILE_SIZES),
    offset: pick(r, [0, 0, 1, 2 ** 40]),
    size: Array.from({ length: rank }, () => pick(r, HOSTILE_SIZES)),
    stride: Array.from({ length: rank }, () => pick(r, HOSTILE_STRIDES)),
  }]);
}

/** A whole pickle that attacks the unpickler or the tensor checks. */
export function hostilePickle(r: Rng, entries: ReadonlyArray<{ name: string }>): Buffer {
  const storages = entries.map((e) => /\/data\/([^/]+)$/.exec(e.name)?.[1]).filter((k): k is string => k !== undefined);
  switch (int(r, 5)) {
    case 0: // a list that contains itself, handed to persistent_load (printed by its error)
      return Buffer.from([0x80, 0x02, 0x5d, 0x71, 0x00, 0x68, 0x00, 0x61, 0x51, 0x2e]);
    case 1: { // lists nested far deeper than a recursive printer can go
      const n = pick(r, [1_000, 1_000, 50_000]);
      const deep = Buffer.concat([Buffer.alloc(n, 0x5d), Buffer.alloc(n - 1, 0x61)]);
      // Handed to persistent_load, returned as the root, or used as a state dict key.
      return pick(r, [
        Buffer.concat([Buffer.from([0x80, 0x02]), deep, Buffer.from('Q.')]),
        Buffer.concat([Buffer.from([0x80, 0x02]), deep, Buffer.from('.')]),
        Buffer.concat([Buffer.from([0x80, 0x02, 0x7d]), deep, Buffer.from('K\x01s.')]),
      ]);
    }
    case 2: { // a dict that holds itself as a value
      return Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x6b, 0x68, 0x00, 0x73, 0x2e]);
    }
    default:
      return hostileTensorPickle(r, storages.length > 0 ? pick(r, storages) : '0');
  }
}
