// Public surface of src/tokenizer: one Tokenizer over tokenizer.model and tokenizer.json, and the SentencePiece processor.
export { Tokenizer, type DecodeOptions, type EncodeOptions, type FromDirOptions } from './tokenizer.ts';
export { SentencePieceProcessor } from './sentencepiece.ts';
export { parseSentencePieceModel, PieceType, type SentencePieceModel } from './sentencepiece-model.ts';
export { parseTokenizerConfig, type TokenizerConfig } from './tokenizer-config.ts';
