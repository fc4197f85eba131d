// Reads a SentencePiece `tokenizer.model` (ModelProto) into plain data and checks it the way SentencePiece does on load.
import { FormatError } from '../errors.ts';
import { ProtoReader, WIRE_BYTES, WIRE_FIXED32, WIRE_VARINT, type ProtoField } from '../formats/protobuf.ts';

/** ModelProto.SentencePiece.Type. */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
export type PieceTypeValue = (typeof PieceType)[keyof typeof PieceType];

export interface SentencePiece {
  piece: string;
  /** float32, as stored. */
  score: number;
  type: PieceTypeValue;
}

export interface NormalizerSpec {
  name: string;
  /** Double-array trie plus replacement strings; empty for `identity`. */
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface TrainerSpec {
  /** 1 = UNIGRAM, 2 = BPE (3 = WORD and 4 = CHAR are refused). */
  modelType: 1 | 2;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  /** What `<unk>` decodes to (default " ⁇ "). */
  unkSurface: string;
}

export interface SentencePieceModel {
  pieces: SentencePiece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
}

const SP_HINT = 'the file is corrupt or not a SentencePiece model';

const MODEL_TYPES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };
/** Names of SentencePiece's built-in and custom normalization rules; all are applied through the charsmap. */
const NORMALIZER_NAMES = new Set(['identity', 'nmt_nfkc', 'nfkc', 'nmt_nfkc_cf', 'nfkc_cf', 'user_defined', '']);

function bool(f: ProtoField, where: string): boolean {
  expectWire(f, WIRE_VARINT, where);
  return f.varint !== 0;
}

function expectWire(f: ProtoField, wire: number, where: string): void {
  if (f.wire !== wire) throw new FormatError(`${where}: field ${f.field} has wire type ${f.wire}, expected ${wire}`, { where, hint: SP_HINT });
}

function readPiece(bytes: Uint8Array, where: string): SentencePiece {
  const sp: SentencePiece = { piece: '', score: 0, type: PieceType.NORMAL };
  new ProtoReader(bytes, where, SP_HINT).forEach((f) => {
    if (f.field === 1) sp.piece = ProtoReader.string(f, `${where}.piece`);
    else if (f.field === 2) {
      expectWire(f, WIRE_FIXED32, `${where}.score`);
      sp.score = f.float;
    } else if (f.field === 3) {
      expectWire(f, WIRE_VARINT, `${where}.type`);
      if (f.varint < 1 || f.varint > 6) throw new FormatError(`${where}.type: unknown piece type ${f.varint}`, { where: `${where}.type` });
      sp.type = f.varint as PieceTypeValue;
    }
  });
  return sp;
}

function readTrainerSpec(bytes: Uint8Array, where: string): TrainerSpec {
  let modelType = 1;
  const spec: TrainerSpec = {
    modelType: 1,
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    unkPiece: '<unk>',
    bosPiece: '<s>',
    eosPiece: '</s>',
    padPiece: '<pad>',
    unkSurface: ' \u2047 ',
  };
  new ProtoReader(bytes, where, SP_HINT).forEach((f) => {
    switch (f.field) {
      case 3:
        expectWire(f, WIRE_VARINT, `${where}.model_type`);
        modelType = f.varint;
        break;
      case 35:
        spec.byteFallback = bool(f, `${where}.byte_fallback`);
        break;
      case 24:
        spec.treatWhitespaceAsSuffix = bool(f, `${where}.treat_whitespace_as_suffix`);
        break;
      case 44:
        spec.unkSurface = ProtoReader.string(f, `${where}.unk_surface`);
        break;
      case 45:
        spec.unkPiece = ProtoReader.string(f, `${where}.unk_piece`);
        break;
      case 46:
        spec.bosPiece = ProtoReader.string(f, `${where}.bos_piece`);
        break;
      case 47:
        spec.eosPiece = ProtoReader.string(f, `${where}.eos_piece`);
        break;
      case 48:
        spec.padPiece = ProtoReader.string(f, `${where}.pad_piece`);
        break;
    }
  });
  if (modelType !== 1 && modelType !== 2) {
    const name = MODEL_TYPES[modelType] ?? `unknown (${modelType})`;
    throw new FormatError(`${where}.model_type: ${name} models are not supported (only UNIGRAM and BPE)`, {
      where: `${where}.model_type`,
      hint: 'Llama, Mistral, T5 and most SentencePiece models are BPE or UNIGRAM',
    });
  }
  spec.modelType = modelType;
  if (spec.treatWhitespaceAsSuffix) {
    throw new FormatError(`${where}.treat_whitespace_as_suffix: models that put the whitespace mark at the end of pieces are not supported`, {
      where: `${where}.treat_whitespace_as_suffix`,
    });
  }
  return spec;
}

function readNormalizerSpec(bytes: Uint8Array, where: string): NormalizerSpec {
  const spec: NormalizerSpec = { name: '', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
  new ProtoReader(bytes, where, SP_HINT).forEach((f) => {
    if (f.field === 1) spec.name = ProtoReader.string(f, `${where}.name`);
    else if (f.field === 2) {
      expectWire(f, WIRE_BYTES, `${where}.precompiled_charsmap`);
      spec.precompiledCharsmap = f.bytes;
    } else if (f.field === 3) spec.addDummyPrefix = bool(f, `${where}.add_dummy_prefix`);
    else if (f.field === 4) spec.removeExtraWhitespaces = bool(f, `${where}.remove_extra_whitespaces`);
    else if (f.field === 5) spec.escapeWhitespaces = bool(f, `${where}.escape_whitespaces`);
  });
  return spec;
}

/** Parses and validates a ModelProto. `file` names the source in errors. */
export function parseSentencePieceModel(buf: Uint8Array, file: string): SentencePieceModel {
  const pieces: SentencePiece[] = [];
  let trainerSpec: TrainerSpec | null = null;
  let normalizerSpec: NormalizerSpec | null = null;
  let denormalizer: NormalizerSpec | null = null;
  new ProtoReader(buf, file, SP_HINT).forEach((f) => {
    if (f.field === 1) {
      expectWire(f, WIRE_BYTES, `${file}: pieces`);
      pieces.push(readPiece(f.bytes, `${file}: pieces[${pieces.length}]`));
    } else if (f.field === 2) {
      expectWire(f, WIRE_BYTES, `${file}: trainer_spec`);
      trainerSpec = readTrainerSpec(f.bytes, `${file}: trainer_spec`);
    } else if (f.field === 3) {
      expectWire(f, WIRE_BYTES, `${file}: normalizer_spec`);
      normalizerSpec = readNormalizerSpec(f.bytes, `${file}: normalizer_spec`);
    } else if (f.field === 5) {
      expectWire(f, WIRE_BYTES, `${file}: denormalizer_spec`);
      denormalizer = readNormalizerSpec(f.bytes, `${file}: denormalizer_spec`);
    }
  });
  if (pieces.length === 0) {
    throw new FormatError(`${file}: pieces: the model has no pieces`, { where: `${file}: pieces`, hint: SP_HINT });
  }
  const trainer = trainerSpec ?? readTrainerSpec(new Uint8Array(0), `${file}: trainer_spec`);
  const normalizer = normalizerSpec ?? readNormalizerSpec(new Uint8Array(0), `${file}: normalizer_spec`);
  if (!NORMALIZER_NAMES.has(normalizer.name)) {
    throw new FormatError(`${file}: normalizer_spec.name: normalizer "${normalizer.name}" is not supported`, {
      where: `${file}: normalizer_spec.name`,
      hint: `supported: ${[...NORMALIZER_NAMES].filter(Boolean).join(', ')}`,
    });
  }
  if (normalizer.name !== 'identity' && normalizer.name !== '' && normalizer.precompiledCharsmap.length === 0) {
    throw new FormatError(`${file}: normalizer_spec.precompiled_charsmap: normalizer "${normalizer.name}" has no compiled rules`, {
      where: `${file}: normalizer_spec.precompiled_charsmap`,
    });
  }
  if ((denormalizer as NormalizerSpec | null)?.precompiledCharsmap.length) {
    throw new FormatError(`${file}: denormalizer_spec: decoding-time normalization rules are not supported`, { where: `${file}: denormalizer_spec` });
  }
  validatePieces(pieces, trainer, file);
  return { pieces, trainerSpec: trainer, normalizerSpec: normalizer };
}

/** The checks of SentencePiece's ModelInterface::InitializePieces, as FormatErrors. */
function validatePieces(pieces: SentencePiece[], trainer: TrainerSpec, file: string): void {
  const normal = new Set<string>();
  const reserved = new Set<string>();
  const bytes = new Set<number>();
  let unk = -1;
  pieces.forEach((sp, i) => {
    const where = `${file}: pieces[${i}]`;
    if (sp.piece === '') throw new FormatError(`${where}.piece: piece must not be empty`, { where });
    const isNormal = sp.type === PieceType.NORMAL || sp.type === PieceType.USER_DEFINED || sp.type === PieceType.UNUSED;
    const set = isNormal ? normal : reserved;
    if (set.has(sp.piece)) throw new FormatError(`${where}.piece: "${sp.piece}" is already defined`, { where });
    set.add(sp.piece);
    if (sp.type === PieceType.UNKNOWN) {
      if (unk >= 0) throw new FormatError(`${where}.type: unk is already defined (pieces[${unk}])`, { where });
      unk = i;
    }
    if (sp.type === PieceType.BYTE) {
      if (!trainer.byteFallback) throw new FormatError(`${where}.type: byte piece ${sp.piece} is found although trainer_spec.byte_fallback is false`, { where });
      const b = pieceToByte(sp.piece);
      if (b < 0) throw new FormatError(`${where}.piece: byte piece "${sp.piece}" is invalid`, { where });
      bytes.add(b);
    }
  });
  if (unk < 0) throw new FormatError(`${file}: pieces: unk is not defined (no piece of type UNKNOWN)`, { where: `${file}: pieces` });
  if (trainer.byteFallback && bytes.size !== 256) {
    throw new FormatError(`${file}: pieces: there are ${bytes.size}, not 256, byte pieces although trainer_spec.byte_fallback is true`, { where: `${file}: pieces` });
  }
}

/** `<0xNN>` (uppercase hex, as SentencePiece writes it) to its byte, or -1. */
export function pieceToByte(piece: string): number {
  const m = /^<0x([0-9A-F]{2})>$/.exec(piece);
  return m ? parseInt(m[1]!, 16) : -1;
}

export function byteToPiece(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}
