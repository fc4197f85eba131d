// Bad tokenizer.model files: each is refused with a FormatError that names the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../../src/errors.ts';
import { SentencePieceProcessor } from '../../src/tokenizer/index.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tokenizer');

// A tiny protobuf writer, enough to build ModelProtos with chosen fields.
function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(n));
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const field = (num: number, wire: number): number[] => varint((num << 3) | wire);
const int = (num: number, v: number): number[] => [...field(num, 0), ...varint(v)];
const bytes = (num: number, b: number[] | Uint8Array): number[] => [...field(num, 2), ...varint(b.length), ...b];
const str = (num: number, s: string): number[] => bytes(num, [...Buffer.from(s, 'utf8')]);
const piece = (p: string, type = 1): number[] => bytes(1, [...str(1, p), ...field(2, 5), 0, 0, 0, 0, ...int(3, type)]);

function model(opts: { modelType?: number; normalizer?: number[]; pieces?: number[][]; trainer?: number[] } = {}): Uint8Array {
  const pieces = opts.pieces ?? [piece('<unk>', 2), piece('<s>', 3), piece('</s>', 3), piece('\u2581a'), piece('a')];
  return Uint8Array.from([
    ...pieces.flat(),
    ...bytes(2, [...int(3, opts.modelType ?? 2), ...(opts.trainer ?? [])]),
    ...bytes(3, opts.normalizer ?? [...str(1, 'identity')]),
  ]);
}

function refuses(buf: Uint8Array, pattern: RegExp): void {
  assert.throws(() => new SentencePieceProcessor(buf, 'bad.model'), (err: unknown) => err instanceof FormatError && pattern.test(err.message));
}

test('a minimal hand-built model loads and encodes', () => {
  const sp = new SentencePieceProcessor(model(), 'tiny.model');
  assert.deepEqual(sp.encode('a a'), [3, 3]);
  assert.deepEqual(sp.encodeAsPieces('ab'), ['\u2581a', 'b']);
  assert.deepEqual(sp.encode('ab'), [3, 0]);
  assert.equal(sp.decode([1, 3, 0, 3, 2]), 'a ⁇  a');
});

test('negative int32 fields (10-byte varints) are read', () => {
  // pad_id = -1 as written by spm_train
  const sp = new SentencePieceProcessor(model({ trainer: int(43, -1) }), 'tiny.model');
  assert.equal(sp.padId, -1);
});

test('unsupported model types name trainer_spec.model_type', () => {
  refuses(model({ modelType: 3 }), /trainer_spec\.model_type: WORD models are not supported/);
  refuses(model({ modelType: 4 }), /trainer_spec\.model_type: CHAR models are not supported/);
  refuses(model({ modelType: 9 }), /trainer_spec\.model_type/);
});

test('unsupported normalizers name the normalizer_spec field', () => {
  refuses(model({ normalizer: str(1, 'my_rules') }), /normalizer_spec\.name: normalizer "my_rules" is not supported/);
  refuses(model({ normalizer: str(1, 'nmt_nfkc') }), /normalizer_spec\.precompiled_charsmap/);
  refuses(model({ normalizer: [...str(1, 'nmt_nfkc'), ...bytes(2, [0xff, 0xff, 0, 0, 1, 2])] }), /precompiled_charsmap: the precompiled charsmap is broken/);
  refuses(model({ trainer: int(24, 1) }), /treat_whitespace_as_suffix/);
});

test('piece table errors follow SentencePiece load checks', () => {
  refuses(model({ pieces: [piece('a'), piece('b')] }), /unk is not defined/);
  refuses(model({ pieces: [piece('<unk>', 2), piece('a'), piece('a')] }), /pieces\[2\]\.piece: "a" is already defined/);
  refuses(model({ pieces: [piece('<unk>', 2), piece('<0x41>', 6)] }), /byte_fallback is false/);
  refuses(model({ pieces: [piece('<unk>', 2), piece('<0x41>', 6)], trainer: int(35, 1) }), /not 256, byte pieces/);
  refuses(model({ pieces: [piece('<unk>', 2), piece('x', 9)] }), /pieces\[1\]\.type: unknown piece type 9/);
  refuses(model({ pieces: [] }), /pieces: the model has no pieces/);
});

test('corrupt and non-SentencePiece files are FormatErrors, never crashes', () => {
  const good = readFileSync(join(FIXTURES, 'bpe.model'));
  refuses(Uint8Array.from(Buffer.from('{"model": {"type": "BPE"}}')), /not a valid protobuf message|has no pieces|wire type/);
  refuses(new Uint8Array(0), /has no pieces/);
  refuses(good.subarray(0, good.length - 7), /runs past the end|truncated|not a valid protobuf/);
  // Random bytes: whatever they parse as, the outcome is a FormatError.
  let seed = 12345;
  for (let k = 0; k < 200; k++) {
    const junk = new Uint8Array(64).map(() => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff);
    assert.throws(() => new SentencePieceProcessor(junk, 'junk.model'), FormatError);
  }
  assert.throws(() => SentencePieceProcessor.fromFile(join(FIXTURES, 'missing.model')), /cannot read/);
});
