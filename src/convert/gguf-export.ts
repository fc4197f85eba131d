// `sftkit convert --reversed --format gguf`: a sftkit checkpoint (or an HF folder) -> one GGUF v3 file that
// llama.cpp and ollama load, plus an ollama Modelfile beside it. Tensors stream one at a time, converted a
// block of rows at a time, so memory stays near one source tensor. A LoRA run's adapter-only checkpoint is
// exported merged into its base (the merged model is then held in memory in fp32).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import { MANIFEST_FILE, resolveCheckpointDir } from '../formats/checkpoint-dir.ts';
import { castFloat, DTYPE_BYTES, type WeightDtype } from '../formats/dtypes.ts';
import { encodeGgml, type GgmlFloatType } from '../formats/ggml-encode.ts';
import { GGML_TYPES, type GgufTensorInfo, type GgufValue, writeGguf } from '../formats/gguf.ts';
import { planConversion } from '../formats/weight-plan.ts';
import type { WeightSource } from '../formats/weight-source.ts';
import type { LlamaConfig, ModelConfig } from '../models/config.ts';
import { exportSourceOf } from './merge-lora.ts';
import { ggufArchOf, mapTensorsToGguf, permutedSourceRow, type MappedTensor } from './gguf-tensor-map.ts';
import { partTemplateJinja } from './gguf-chat-template.ts';
import { ggufVocab } from './gguf-vocab.ts';
import { modelfileText } from './modelfile.ts';
import { recordedTemplate } from '../data/recorded-template.ts';

/** `--dtype` names for GGUF and the tensor type each gives to the tensors that are not kept in f32. */
export const GGUF_DTYPES = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', q8_0: 'Q8_0' } as const satisfies Record<string, GgmlFloatType>;
export type GgufDtypeName = keyof typeof GGUF_DTYPES;

/** llama.cpp's `general.file_type` (LLAMA_FTYPE) for each. */
const FILE_TYPE: Record<GgmlFloatType, number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };

/** Bytes of output converted per write: bounds the scratch memory whatever the tensor size. */
const CHUNK_ELEMENTS = 1 << 20;

export interface GgufExportOptions {
  inputPath: string;
  /** The .gguf file to write (must not exist); the Modelfile goes beside it. */
  outputPath: string;
  /** Default: the weights' stored float type (f32 when mixed). */
  dtype?: GgufDtypeName;
  /** A LoRA checkpoint's base model folder, instead of the one it records (--base_model). */
  baseModel?: string;
  onTensor?: (name: string, bytesDone: number) => void;
}

export interface GgufExportReport {
  outputPath: string;
  modelfilePath: string;
  modelType: string;
  arch: string;
  tensors: number;
  /** Tensor type of the weight matrices. */
  dtype: GgmlFloatType;
  /** Tensors stored as F16 because their rows are not whole Q8_0 blocks. */
  f16Fallbacks: string[];
  bytes: number;
  seconds: number;
  /** Where llama.cpp will not behave exactly as sftkit (e.g. tokenizer normalization). */
  warnings: string[];
  /** The training template written as the chat template, when the checkpoint records one of sftkit's. */
  chatTemplate: string | null;
}

/** A model folder for export: a sftkit checkpoint (or training checkpoint / checkpoint root) or an HF folder. */
export function resolveExportInput(path: string): string {
  if (!existsSync(path)) throw new ConfigError(`--input_path ${path} does not exist`, { where: path });
  if (existsSync(join(path, MANIFEST_FILE)) || existsSync(join(path, 'meta.json'))) return resolveCheckpointDir(path);
  if (existsSync(join(path, 'config.json'))) return path;
  throw new ConfigError(`--input_path ${path} is neither a sftkit checkpoint nor an HF model folder (no sftkit.json, meta.json or config.json)`, { where: path });
}

function defaultType(source: WeightSource, tensors: readonly MappedTensor[]): GgmlFloatType {
  const dtypes = new Set(tensors.map((t) => source.get(t.source)!.dtype));
  const only = dtypes.size === 1 ? [...dtypes][0] : undefined;
  return only === 'BF16' ? 'BF16' : only === 'F16' ? 'F16' : 'F32';
}

function typeOf(t: MappedTensor, target: GgmlFloatType): GgmlFloatType {
  if (t.keepF32) return 'F32';
  const inner = t.shape[t.shape.length - 1]!;
  // As llama.cpp's converter: rows that are not whole Q8_0 blocks fall back to F16.
  if (target === 'Q8_0' && inner % GGML_TYPES.Q8_0.blockSize !== 0) return 'F16';
  return target;
}

const u32 = (value: number): GgufValue => ({ type: 'uint32', value });
const f32 = (value: number): GgufValue => ({ type: 'float32', value });
const str = (value: string): GgufValue => ({ type: 'string', value });

/** Architecture metadata as llama.cpp's converter writes it. */
function archMetadata(cfg: ModelConfig, fileType: number, name: string): Map<string, GgufValue> {
  const arch = ggufArchOf(cfg);
  const md = new Map<string, GgufValue>([
    ['general.architecture', str(arch)],
    ['general.type', str('model')],
    ['general.name', str(name)],
  ]);
  const a = (key: string, v: GgufValue): void => void md.set(`${arch}.${key}`, v);
  if (cfg.family === 'gpt2') {
    a('block_count', u32(cfg.numHiddenLayers));
    a('context_length', u32(cfg.nPositions));
    a('embedding_length', u32(cfg.nEmbd));
    a('feed_forward_length', u32(cfg.nInner));
    a('attention.head_count', u32(cfg.nHead));
    a('attention.layer_norm_epsilon', f32(cfg.layerNormEpsilon));
  } else {
    a('block_count', u32(cfg.numHiddenLayers));
    a('context_length', u32(cfg.maxPositionEmbeddings));
    a('embedding_length', u32(cfg.hiddenSize));
    a('feed_forward_length', u32(cfg.intermediateSize));
    a('attention.head_count', u32(cfg.numAttentionHeads));
    a('attention.head_count_kv', u32(cfg.numKeyValueHeads));
    a('rope.freq_base', f32(cfg.ropeTheta));
    a('attention.layer_norm_rms_epsilon', f32(cfg.rmsNormEps));
    if (cfg.raw['head_dim'] !== undefined) {
      a('attention.key_length', u32(cfg.headDim));
      a('attention.value_length', u32(cfg.headDim));
    }
    if (arch === 'llama') {
      a('vocab_size', u32(cfg.vocabSize));
      a('rope.dimension_count', u32(cfg.headDim));
    }
    const rs = cfg.ropeScaling;
    if (rs?.type === 'linear') {
      a('rope.scaling.type', str('linear'));
      a('rope.scaling.factor', f32(rs.factor));
    } else if (rs?.type === 'dynamic') {
      throw new ConfigError(`rope_scaling type dynamic has no llama.cpp equivalent; GGUF export refuses it`, { where: 'config.json: rope_scaling' });
    }
  }
  md.set('general.file_type', u32(fileType));
  md.set('general.quantization_version', u32(2));
  return md;
}

/** Llama 3's per-frequency divisors, written as the `rope_freqs.weight` tensor llama.cpp multiplies in. */
export function llama3RopeFactors(cfg: LlamaConfig): Float32Array {
  const rs = cfg.ropeScaling!;
  const half = cfg.headDim / 2;
  const out = new Float32Array(half);
  const low = rs.lowFreqFactor!;
  const high = rs.highFreqFactor!;
  const oldLen = rs.originalMaxPositionEmbeddings!;
  for (let i = 0; i < half; i++) {
    const freq = 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < oldLen / high) out[i] = 1;
    else if (wavelen > oldLen / low) out[i] = rs.factor;
    else {
      const smooth = (oldLen / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / rs.factor + smooth);
    }
  }
  return out;
}

/** Source float data as f32, aligned for a Float32Array view. */
function asF32(bytes: Uint8Array, dtype: WeightDtype): Float32Array {
  const cast = castFloat(bytes, dtype, 'F32');
  if (cast.byteOffset % 4 === 0) return new Float32Array(cast.buffer, cast.byteOffset, cast.byteLength / 4);
  // A copy through Uint8Array: Buffer's slice() would be a view at the same unaligned offset.
  return new Float32Array(new Uint8Array(cast).buffer);
}

/**
 * Streams one tensor: output rows are gathered from the source (permuted or transposed when the table says
 * so), converted to f32 a chunk at a time, then encoded in the tensor's GGUF type.
 */
function streamTensor(t: MappedTensor, type: GgmlFloatType, raw: Uint8Array, dtype: WeightDtype, write: (chunk: Uint8Array) => void): void {
  const rows = t.shape.length === 1 ? 1 : t.shape[0]!;
  const cols = t.shape.length === 1 ? t.shape[0]! : t.shape.slice(1).reduce((x, y) => x * y, 1);
  const esize = DTYPE_BYTES[dtype];
  if (t.transform === 'transpose') {
    // GPT-2 Conv1D weights are small next to the embedding: transpose the whole tensor in f32.
    const src = asF32(raw, dtype);
    const [inDim, outDim] = t.sourceShape as [number, number];
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / inDim));
    for (let r0 = 0; r0 < outDim; r0 += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, outDim - r0);
      const chunk = new Float32Array(n * inDim);
      for (let r = 0; r < n; r++) for (let c = 0; c < inDim; c++) chunk[r * inDim + c] = src[c * outDim + r0 + r]!;
      write(encodeGgml(chunk, type));
    }
    return;
  }
  const permute = t.transform === 'permute-q' || t.transform === 'permute-k';
  if (t.shape.length === 1 && permute) {
    // A bias: the permutation moves single elements.
    const src = asF32(raw, dtype);
    const out = new Float32Array(cols);
    for (let r = 0; r < cols; r++) out[r] = src[permutedSourceRow(r, cols, t.heads!)]!;
    write(encodeGgml(out, type));
    return;
  }
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / cols));
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, rows - r0);
    let chunk: Float32Array;
    if (!permute) chunk = asF32(raw.subarray(r0 * cols * esize, (r0 + n) * cols * esize), dtype);
    else {
      chunk = new Float32Array(n * cols);
      for (let r = 0; r < n; r++) {
        const s = permutedSourceRow(r0 + r, rows, t.heads!);
        chunk.set(asF32(raw.subarray(s * cols * esize, (s + 1) * cols * esize), dtype), r * cols);
      }
    }
    write(encodeGgml(chunk, type));
  }
}

export function exportGguf(o: GgufExportOptions): GgufExportReport {
  const t0 = performance.now();
  const dir = resolveExportInput(o.inputPath);
  const out = resolve(o.outputPath);
  if (existsSync(out)) throw new ConfigError(`${o.outputPath} already exists`, { where: o.outputPath, hint: 'choose another --output_path or remove it' });
  if (!out.endsWith('.gguf')) throw new ConfigError(`--output_path ${o.outputPath} must name a .gguf file`, { where: '--output_path' });
  const modelfilePath = join(dirname(out), 'Modelfile');
  if (existsSync(modelfilePath)) throw new ConfigError(`${modelfilePath} already exists; the Modelfile is written beside the .gguf`, { where: modelfilePath, hint: 'write the .gguf into another directory' });
  // A LoRA run's adapter-only checkpoint exports as its base with the adapter merged in (as --merge_lora merges it).
  const { folder, cfg, source } = exportSourceOf(dir, o.baseModel ?? null);
  try {
    const vocab = ggufVocab(folder.tokenizerDir, cfg);
    const plan = planConversion(cfg, source.tensors, folder.weightsDir);
    const mapped = mapTensorsToGguf(cfg, plan.tensors, folder.weightsDir);
    const target = o.dtype === undefined ? defaultType(source, mapped) : GGUF_DTYPES[o.dtype];
    const infos: Array<GgufTensorInfo & { mapped?: MappedTensor; data?: Float32Array }> = mapped.map((m) => ({ name: m.name, shape: m.shape, type: typeOf(m, target), mapped: m }));
    if (cfg.family === 'llama' && cfg.ropeScaling?.type === 'llama3') {
      const factors = llama3RopeFactors(cfg);
      infos.push({ name: 'rope_freqs.weight', shape: [factors.length], type: 'F32', data: factors });
    }
    const name = (typeof cfg.raw['_name_or_path'] === 'string' && cfg.raw['_name_or_path'] !== '' ? basename(cfg.raw['_name_or_path']) : basename(resolve(dir)));
    const metadata = archMetadata(cfg, FILE_TYPE[target], name);
    for (const [k, v] of vocab.metadata) metadata.set(k, v);
    // A model fine-tuned with one of sftkit's part templates answers in that template, whatever the base
    // model's tokenizer_config.json says: write it as the GGUF's chat template.
    const recorded = recordedTemplate(dir);
    const trainedJinja = recorded === null ? null : partTemplateJinja(recorded.template, recorded.alpacaPrompts);
    if (trainedJinja !== null) metadata.set('tokenizer.chat_template', { type: 'string', value: trainedJinja });
    mkdirSync(dirname(out), { recursive: true });
    let done = 0;
    const bytes = writeGguf(out, {
      metadata,
      tensors: infos,
      writeTensor(info, write) {
        const i = info as (typeof infos)[number];
        const sink = (chunk: Uint8Array): void => {
          done += chunk.byteLength;
          write(chunk);
        };
        if (i.data !== undefined) sink(encodeGgml(i.data, 'F32'));
        else {
          const m = i.mapped!;
          const w = source.get(m.source)!;
          streamTensor(m, info.type as GgmlFloatType, source.read(m.source), w.dtype, sink);
        }
        o.onTensor?.(info.name, done);
      },
    });
    writeFileSync(modelfilePath, modelfileText({ ggufFile: basename(out), eosText: vocab.eosText, template: recorded?.template ?? null, alpacaPrompts: recorded?.alpacaPrompts ?? false }));
    return {
      outputPath: out,
      modelfilePath,
      modelType: cfg.modelType,
      arch: ggufArchOf(cfg),
      tensors: infos.length,
      dtype: target,
      f16Fallbacks: infos.filter((i) => target === 'Q8_0' && i.type === 'F16').map((i) => i.name),
      bytes,
      seconds: (performance.now() - t0) / 1000,
      warnings: vocab.warnings,
      chatTemplate: trainedJinja === null ? null : `${recorded!.template}${recorded!.alpacaPrompts ? ' with Alpaca prompts' : ''} (recorded with the training data)`,
    };
  } finally {
    source.close();
  }
}
