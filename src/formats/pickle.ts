// An allowlist unpickler: it interprets the pickle opcodes a state dict uses (protocols 0-5) as data only.
// Globals are resolved through the caller's allowlist and anything else is refused by name; no Python-side
// construction opcodes (INST, OBJ, NEWOBJ, EXT) are accepted, so nothing from the file is ever executed.
import { FormatError } from '../errors.ts';

/** An allowlisted global: REDUCE calls `call`; BUILD on its results goes to `build` (or is refused). */
export interface PickleGlobal {
  readonly qualifiedName: string;
  call?(args: unknown[]): unknown;
}

export interface UnpickleOptions {
  /** Name for error messages (file and entry). */
  file: string;
  /** Returns the allowlisted global or throws a FormatError naming it. */
  resolveGlobal(module: string, name: string): PickleGlobal;
  persistentLoad(pid: unknown): unknown;
}

/** A Python dict (string or int keys); BUILD state on it (OrderedDict attributes) is dropped. */
export type PyDict = Map<unknown, unknown>;

class Mark {}
const MARK = new Mark();

export function isPickleGlobal(v: unknown): v is PickleGlobal {
  return typeof v === 'object' && v !== null && 'qualifiedName' in v;
}

export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;

  const fail = (msg: string): never => {
    throw new FormatError(`${opts.file}: pickle byte ${pos}: ${msg}`, { where: opts.file, hint: 'the checkpoint is corrupt or not a PyTorch state dict' });
  };
  const need = (n: number): number => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > data.byteLength) fail(`needs ${n} more bytes but the pickle ends`);
    const at = pos;
    pos += n;
    return at;
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated text line');
    const s = new TextDecoder('latin1').decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) fail('stack underflow');
    const v = stack.pop();
    if (v === MARK) fail('stack underflow');
    return v;
  };
  const top = (): unknown => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('MARK expected');
    return stack.splice(m!);
  };
  const utf8 = (b: Uint8Array): string => {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const int = (v: bigint): number => {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) fail(`integer ${v} is too large`);
    return Number(v);
  };
  const longLE = (b: Uint8Array): number => {
    if (b.byteLength > 8) fail(`integer of ${b.byteLength} bytes is too large`);
    let v = 0n;
    for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b.byteLength > 0 && b[b.byteLength - 1]! & 0x80) v -= 1n << BigInt(8 * b.byteLength);
    return int(v);
  };
  const setItems = (d: unknown, items: unknown[]): void => {
    if (!(d instanceof Map)) fail('SETITEM on something that is not a dict');
    if (items.length % 2 !== 0) fail('odd number of dict items');
    for (let i = 0; i < items.length; i += 2) (d as PyDict).set(items[i], items[i + 1]);
  };
  const appendItems = (l: unknown, items: unknown[]): void => {
    if (!Array.isArray(l)) fail('APPEND on something that is not a list');
    for (const it of items) (l as unknown[]).push(it);
  };
  const global = (module: string, name: string): void => {
    stack.push(opts.resolveGlobal(module, name));
  };
  const memoGet = (k: number): void => {
    if (!memo.has(k)) fail(`memo key ${k} is not set`);
    stack.push(memo.get(k));
  };

  while (true) {
    const opPos = pos;
    const op = data[need(1)]!;
    switch (op) {
      case 0x80: need(1); break; // PROTO
      case 0x95: need(8); break; // FRAME: framing is only a hint for buffered readers
      case 0x2e: { // STOP
        const v = pop();
        return v;
      }
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x49: { // INT (text)
        const s = line().trim();
        if (s === '01' || s === '00') stack.push(s === '01');
        else if (/^-?\d{1,16}$/.test(s)) stack.push(Number(s));
        else fail(`bad INT ${JSON.stringify(s.slice(0, 40))}`);
        break;
      }
      case 0x4c: { // LONG (text)
        const s = line().trim().replace(/L$/, '');
        if (!/^-?\d{1,20}$/.test(s)) fail(`bad LONG ${JSON.stringify(s.slice(0, 40))}`);
        stack.push(int(BigInt(s)));
        break;
      }
      case 0x4a: stack.push(dv.getInt32(need(4), true)); break; // BININT
      case 0x4b: stack.push(data[need(1)]!); break; // BININT1
      case 0x4d: stack.push(dv.getUint16(need(2), true)); break; // BININT2
      case 0x8a: { const n = data[need(1)]!; stack.push(longLE(data.subarray(need(n), pos))); break; } // LONG1
      case 0x8b: { const n = dv.getInt32(need(4), true); stack.push(longLE(data.subarray(need(n), pos))); break; } // LONG4
      case 0x47: stack.push(dv.getFloat64(need(8), false)); break; // BINFLOAT (big-endian)
      case 0x46: { // FLOAT (text)
        const v = Number(line());
        if (Number.isNaN(v)) fail('bad FLOAT');
        stack.push(v);
        break;
      }
      case 0x58: { const n = dv.getUint32(need(4), true); stack.push(utf8(data.subarray(need(n), pos))); break; } // BINUNICODE
      case 0x8c: { const n = data[need(1)]!; stack.push(utf8(data.subarray(need(n), pos))); break; } // SHORT_BINUNICODE
      case 0x8d: { const n = Number(dv.getBigUint64(need(8), true)); stack.push(utf8(data.subarray(need(n), pos))); break; } // BINUNICODE8
      case 0x54: { const n = dv.getInt32(need(4), true); stack.push(new TextDecoder('latin1').decode(data.subarray(need(n), pos))); break; } // BINSTRING
      case 0x55: { const n = data[need(1)]!; stack.push(new TextDecoder('latin1').decode(data.subarray(need(n), pos))); break; } // SHORT_BINSTRING
      case 0x42: { const n = dv.getUint32(need(4), true); stack.push(data.slice(need(n), pos)); break; } // BINBYTES
      case 0x43: { const n = data[need(1)]!; stack.push(data.slice(need(n), pos)); break; } // SHORT_BINBYTES
      case 0x8e: { const n = Number(dv.getBigUint64(need(8), true)); stack.push(data.slice(need(n), pos)); break; } // BINBYTES8
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x64: { const d = new Map(); setItems(d, popMark()); stack.push(d); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x8f: stack.push([]); break; // EMPTY_SET (kept as a list)
      case 0x90: { const items = popMark(); appendItems(top(), items); break; } // ADDITEMS
      case 0x91: stack.push(popMark()); break; // FROZENSET
      case 0x63: { const module = line(); const name = line(); global(module, name); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        global(module as string, name as string);
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!isPickleGlobal(fn) || fn.call === undefined) fail('REDUCE of something that is not an allowed callable');
        if (!Array.isArray(args)) fail(`REDUCE of ${(fn as PickleGlobal).qualifiedName} without an argument tuple`);
        stack.push((fn as PickleGlobal).call!(args as unknown[]));
        break;
      }
      case 0x62: { // BUILD: only dicts (OrderedDict's attributes such as _metadata, which we drop)
        pop();
        if (!(top() instanceof Map)) fail('BUILD on something that is not a dict');
        break;
      }
      case 0x51: stack.push(opts.persistentLoad(pop())); break; // BINPERSID
      case 0x50: stack.push(opts.persistentLoad(line())); break; // PERSID
      case 0x71: memo.set(data[need(1)]!, top()); break; // BINPUT
      case 0x72: memo.set(dv.getUint32(need(4), true), top()); break; // LONG_BINPUT
      case 0x70: { const k = Number(line()); if (!Number.isSafeInteger(k)) fail('bad PUT'); memo.set(k, top()); break; } // PUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: memoGet(data[need(1)]!); break; // BINGET
      case 0x6a: memoGet(dv.getUint32(need(4), true)); break; // LONG_BINGET
      case 0x67: { const k = Number(line()); if (!Number.isSafeInteger(k)) fail('bad GET'); memoGet(k); break; } // GET
      default:
        pos = opPos;
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} (only data opcodes are accepted; object construction is refused)`);
    }
  }
}
