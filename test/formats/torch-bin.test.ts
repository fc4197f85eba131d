// PyTorch .bin reading: shared storages and strided views from real torch.save files, and the refusals:
// legacy format, non-allowlisted globals, construction opcodes, zip bombs and absurd sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { bufferSource } from '../../src/formats/byte-source.ts';
import { openTorchBin, parseTorchBin } from '../../src/formats/torch-bin.ts';
import { unpickle } from '../../src/formats/pickle.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'weights');

test('shared storages, storage offsets and strides from torch.save', () => {
  const f = openTorchBin(join(FIXTURES, 'llama-bin', 'pytorch_model.bin'));
  try {
    const byName = new Map(f.tensors.map((t) => [t.name, t]));
    const q = byName.get('model.layers.0.self_attn.q_proj.weight')!;
    const k = byName.get('model.layers.0.self_attn.k_proj.weight')!;
    const v = byName.get('model.layers.0.self_attn.v_proj.weight')!;
    assert.equal(q.storageKey, k.storageKey);
    assert.equal(k.storageKey, v.storageKey);
    assert.deepEqual([q.storageOffset, k.storageOffset, v.storageOffset], [0, 16 * 16, 16 * 16 + 8 * 16]);
    const head = byName.get('lm_head.weight')!;
    assert.deepEqual([head.shape, head.strides], [[64, 16], [1, 64]]);
    const want = JSON.parse(readFileSync(join(FIXTURES, 'llama-bin', 'expected.json'), 'utf8'));
    assert.ok(Buffer.from(f.read('lm_head.weight')).equals(Buffer.from(want['lm_head.weight'].data, 'base64')));
    assert.ok(Buffer.from(f.read(k.name)).equals(Buffer.from(want[k.name].data, 'base64')));
  } finally {
    f.close();
  }
});

test('legacy torch.save files ask for a re-save', () => {
  assert.throws(() => openTorchBin(join(FIXTURES, 'bad', 'legacy.bin')), (e: unknown) =>
    e instanceof FormatError && /legacy \(non-zip\) torch\.save format/.test(e.message) && /re-save with a newer PyTorch/.test(e.hint ?? ''));
});

test('a pickle calling os.system is refused by name, before anything runs', () => {
  assert.throws(() => openTorchBin(join(FIXTURES, 'bad', 'evil.bin')), (e: unknown) =>
    e instanceof FormatError && /refusing pickle global 'posix\.system'/.test(e.message));
});

const opts = {
  file: 'x.pkl',
  resolveGlobal(module: string, name: string) {
    if (module === 'collections' && name === 'OrderedDict') return { qualifiedName: 'collections.OrderedDict', call: () => new Map() };
    throw new FormatError(`refusing pickle global '${module}.${name}'`);
  },
  persistentLoad: () => null,
};

test('the unpickler reads data opcodes and refuses construction opcodes', () => {
  // {'a': [1, -2, 3.5, True, None, 'é'], 'b': (70000, 2**40)} at protocol 2.
  const hex = '8002 7d 71 00 28 58 01000000 61 5d 71 01 28 4b 01 4a feffffff 47 400c000000000000 88 4e 58 02000000 c3a9 65 58 01000000 62 4a 70110100 8a 06 000000000001 86 75 2e';
  const v = unpickle(Buffer.from(hex.replace(/ /g, ''), 'hex'), opts) as Map<string, unknown>;
  assert.deepEqual(v.get('a'), [1, -2, 3.5, true, null, 'é']);
  assert.deepEqual(v.get('b'), [70000, 2 ** 40]);
  const refuse = (hex: string, pattern: RegExp) => assert.throws(() => unpickle(Buffer.from(hex.replace(/ /g, ''), 'hex'), opts), (e: unknown) => e instanceof FormatError && pattern.test(e.message));
  refuse('63 6275696c74696e730a6576616c0a', /'builtins\.eval'/); // GLOBAL builtins eval
  refuse('8c 02 6f73 8c 06 73797374656d 93', /'os\.system'/); // STACK_GLOBAL os system
  refuse('28 69 6f730a73797374656d0a', /opcode 0x69/); // INST
  refuse('29 81', /opcode 0x81/); // NEWOBJ
  refuse('58 ffffff7f 61', /needs 2147483647 more bytes/); // a 2 GB string claim
  refuse('8a 10 00000000000000000000000000000001 2e', /too large/);
  refuse('68 05', /memo key 5/);
  refuse('2e', /stack underflow/);
  refuse('4b 01', /pickle ends/);
});

/** A one-entry zip (stored or deflated) named like a torch checkpoint's pickle. */
function zipWith(name: string, data: Uint8Array, opt: { deflate?: boolean; claimSize?: number } = {}): Uint8Array {
  const body = opt.deflate ? deflateRawSync(data) : Buffer.from(data);
  const nameB = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(opt.deflate ? 8 : 0, 8);
  local.writeUInt32LE(body.byteLength, 18);
  local.writeUInt32LE(opt.claimSize ?? data.byteLength, 22);
  local.writeUInt16LE(nameB.byteLength, 26);
  const cd = Buffer.alloc(46);
  cd.writeUInt32LE(0x02014b50, 0);
  cd.writeUInt16LE(opt.deflate ? 8 : 0, 10);
  cd.writeUInt32LE(body.byteLength, 20);
  cd.writeUInt32LE(opt.claimSize ?? data.byteLength, 24);
  cd.writeUInt16LE(nameB.byteLength, 28);
  const cdOffset = 30 + nameB.byteLength + body.byteLength;
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(1, 8);
  eocd.writeUInt16LE(1, 10);
  eocd.writeUInt32LE(46 + nameB.byteLength, 12);
  eocd.writeUInt32LE(cdOffset, 16);
  return Buffer.concat([local, nameB, body, cd, nameB, eocd]);
}

test('zip bombs and absurd sizes are refused', () => {
  const parse = (b: Uint8Array) => () => parseTorchBin(bufferSource('m.bin', b));
  // 1 GB of zeros deflates to ~1 MB; declared honestly it is over the pickle cap, so it is never inflated.
  const bomb = zipWith('archive/data.pkl', new Uint8Array(1 << 20), { deflate: true, claimSize: 0xfffffff0 });
  assert.throws(parse(bomb), /claims 4294967280 bytes, more than the 268435456-byte limit/);
  // Declared small but inflating to more: stopped at the declared size.
  const liar = zipWith('archive/data.pkl', new Uint8Array(1 << 20), { deflate: true, claimSize: 100 });
  assert.throws(parse(liar), (e: unknown) => e instanceof FormatError && /data\.pkl/.test(e.message));
  // A stored entry claiming more bytes than the file has.
  const short = zipWith('archive/data.pkl', new Uint8Array(10), { claimSize: 10 });
  const cdSizeAt = short.byteLength - 22 - 16 - 46 + 20;
  const view = Buffer.from(short.buffer, short.byteOffset, short.byteLength);
  view.writeUInt32LE(1e9, cdSizeAt);
  view.writeUInt32LE(1e9, cdSizeAt + 4);
  assert.throws(parse(short), /runs past the end of the file/);
  assert.throws(parse(zipWith('weights.pt', new Uint8Array(4))), /no <name>\/data\.pkl/);
  assert.equal(parse(zipWith('archive/data.pkl', Buffer.from('80027d2e', 'hex')))().tensors.length, 0);
  assert.throws(parse(zipWith('archive/data.pkl', Buffer.from('80024b012e', 'hex'))), /does not hold a state dict/);
});
