// MindSpore `.ckpt` in and out of sftkit through MindFormers' name tables: a checkpoint read as a WeightSource
// with HF names (so conversion and --load_checkpoint check it like any HF folder), and a model exported as
// the `.ckpt` MindFormers' convert_weight.py would write from the same HF weights.
import { basename } from 'node:path';
import { ConfigError, FormatError } from '../errors.ts';
import { castFloat, DTYPE_BYTES, isFloatDtype, type WeightDtype } from '../formats/dtypes.ts';
import { openMindSporeCkpt, writeMindSporeCkpt, type CkptTensorSpec } from '../formats/mindspore-ckpt.ts';
import type { WeightSource, WeightTensor } from '../formats/weight-source.ts';
import type { ModelConfig } from '../models/config.ts';
import { expectedTensors } from '../models/tensor-table.ts';
import { MINDFORMERS_NAMES, TRAINING_STATE, ruleAt, type MsNameRule } from './mindformers-names.ts';

export interface MsTensorMapping {
  /** MindFormers name and shape. */
  ms: string;
  msShape: number[];
  /** The HF tensor it comes from (or a slice of it) and that tensor's shape. */
  hf: string;
  hfShape: number[];
  part?: MsNameRule['part'];
}

const list = (xs: string[]): string => (xs.length <= 5 ? xs.join(', ') : `${xs.slice(0, 5).join(', ')} and ${xs.length - 5} more`);

/**
 * Every MindSpore tensor of this config's MindFormers checkpoint, in the order MindFormers writes them, with
 * the HF tensor each one comes from. Every HF tensor (bar a tied lm_head) is covered, or this throws.
 */
export function mindformersTensors(cfg: ModelConfig): MsTensorMapping[] {
  const table = MINDFORMERS_NAMES[cfg.family];
  const expected = new Map(expectedTensors(cfg).map((e) => [e.name, e]));
  const out: MsTensorMapping[] = [];
  const add = (rule: MsNameRule, i: number): void => {
    const { hf, ms } = ruleAt(rule, i);
    const e = expected.get(hf);
    if (e === undefined) return; // a bias this config does not have
    let msShape = e.shape;
    if (rule.part !== undefined) {
      const last = e.shape[e.shape.length - 1]!;
      const width = last / rule.part.of;
      msShape = e.shape.length === 2 && rule.part.transpose ? [width, e.shape[0]!] : [...e.shape.slice(0, -1), width];
    }
    out.push({ ms, msShape, hf, hfShape: e.shape, ...(rule.part !== undefined ? { part: rule.part } : {}) });
  };
  for (const r of table.head) add(r, 0);
  for (let i = 0; i < cfg.numHiddenLayers; i++) for (const r of table.layer) add(r, i);
  for (const r of table.tail) add(r, 0);
  const covered = new Set(out.map((m) => m.hf));
  const uncovered = [...expected.values()].filter((e) => !covered.has(e.name) && e.optional !== 'tied').map((e) => e.name);
  if (uncovered.length > 0) {
    throw new ConfigError(`MindFormers' ${cfg.family} checkpoint has no tensor for ${list(uncovered)}`, {
      where: uncovered[0],
      hint: cfg.family === 'gpt2' ? "MindFormers' GPT-2 ties lm_head to the word embedding" : 'this architecture has no MindFormers name table',
    });
  }
  return out;
}

/** A 2-D row-major array of `elem`-byte values, transposed ([rows, cols] -> [cols, rows]). */
function transpose(src: Uint8Array, rows: number, cols: number, elem: number): Uint8Array {
  const out = new Uint8Array(src.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = (r * cols + c) * elem;
      const to = (c * rows + r) * elem;
      for (let b = 0; b < elem; b++) out[to + b] = src[from + b]!;
    }
  }
  return out;
}

/** Part `index` of `of` equal slices of the last axis of an [rows, cols] array (rows = 1 for a vector). */
function slicePart(src: Uint8Array, rows: number, cols: number, index: number, of: number, elem: number): Uint8Array {
  const w = (cols / of) * elem;
  const out = new Uint8Array(rows * w);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * cols * elem + index * w, r * cols * elem + (index + 1) * w), r * w);
  return out;
}

/** The HF tensor's bytes for MindSpore tensor `m`, from the whole HF tensor. */
export function msBytesOf(m: MsTensorMapping, hfBytes: Uint8Array, dtype: WeightDtype): Uint8Array {
  if (m.part === undefined) return hfBytes;
  const elem = DTYPE_BYTES[dtype];
  const cols = m.hfShape[m.hfShape.length - 1]!;
  const rows = m.hfShape.length === 2 ? m.hfShape[0]! : 1;
  const slice = slicePart(hfBytes, rows, cols, m.part.index, m.part.of, elem);
  return m.part.transpose && m.hfShape.length === 2 ? transpose(slice, rows, cols / m.part.of, elem) : slice;
}

/** Training state and buffers a MindFormers checkpoint may hold besides the weights. */
function isSkippable(cfg: ModelConfig, name: string): boolean {
  return TRAINING_STATE.some((re) => re.test(name)) || MINDFORMERS_NAMES[cfg.family].buffers.some((re) => re.test(name));
}

/**
 * A MindSpore checkpoint as a WeightSource with HF names: renamed tensors read as they are, GPT-2's q/k/v parts
 * joined back into c_attn. Optimizer state, step counters and buffers are skipped; any other name is refused.
 */
export function openMindSporeWeights(ckptPath: string, cfg: ModelConfig): WeightSource & { skipped: string[] } {
  const ckpt = openMindSporeCkpt(ckptPath);
  try {
    const file = basename(ckptPath);
    const mappings = mindformersTensors(cfg);
    const byMs = new Map(mappings.map((m) => [m.ms, m]));
    const skipped: string[] = ckpt.others.map((o) => o.name);
    const unknown: string[] = [];
    for (const t of ckpt.tensors) {
      if (byMs.has(t.name)) continue;
      if (isSkippable(cfg, t.name)) skipped.push(t.name);
      else unknown.push(t.name);
    }
    if (unknown.length > 0) {
      throw new FormatError(`${ckptPath}: ${unknown.length} tensor(s) are not names MindFormers' ${cfg.family} conversion writes: ${list(unknown)}`, {
        where: `${ckptPath}: ${unknown[0]}`,
        hint: `the checkpoint is not a MindFormers ${cfg.family} model, or config.json describes another architecture (fused w_qkv checkpoints from --qkv_concat are not read)`,
      });
    }
    // Group MindSpore tensors by the HF tensor they make up.
    const groups = new Map<string, MsTensorMapping[]>();
    for (const m of mappings) {
      if (ckpt.get(m.ms) === undefined) continue;
      groups.set(m.hf, [...(groups.get(m.hf) ?? []), m]);
    }
    const tensors: WeightTensor[] = [];
    for (const [hf, parts] of groups) {
      const first = ckpt.get(parts[0]!.ms)!;
      const at = `${ckptPath}: tensor ${first.name}`;
      if (parts[0]!.part === undefined) {
        tensors.push({ name: hf, dtype: first.dtype, shape: first.shape, file });
        continue;
      }
      const of = parts[0]!.part.of;
      const missing = mappings.filter((m) => m.hf === hf && ckpt.get(m.ms) === undefined).map((m) => m.ms);
      if (missing.length > 0) throw new FormatError(`${ckptPath}: ${missing.join(', ')} missing (the other parts of ${hf} are there)`, { where: `${ckptPath}: ${missing[0]}` });
      for (const p of parts) {
        const t = ckpt.get(p.ms)!;
        if (t.dtype !== first.dtype) throw new FormatError(`${ckptPath}: tensor ${t.name} is ${t.dtype} but ${first.name} is ${first.dtype}`, { where: `${ckptPath}: ${t.name}` });
        if (t.shape.length !== p.msShape.length || t.shape.some((s, k) => s !== first.shape[k])) {
          throw new FormatError(`${ckptPath}: tensor ${t.name} has shape [${t.shape.join(', ')}], unlike ${first.name} [${first.shape.join(', ')}]`, { where: `${ckptPath}: ${t.name}` });
        }
      }
      if (first.shape.length < 1 || first.shape.length > 2) throw new FormatError(`${at} has ${first.shape.length} dims; a q/k/v part has 1 or 2`, { where: at });
      // [d, in] transposed parts make an [in, 3d] weight; [d] bias parts a [3d] bias.
      const shape = first.shape.length === 2 ? [first.shape[1]!, of * first.shape[0]!] : [of * first.shape[0]!];
      tensors.push({ name: hf, dtype: first.dtype, shape, file });
    }
    const byName = new Map(tensors.map((t) => [t.name, t]));
    return {
      dir: ckptPath,
      format: 'mindspore',
      tensors,
      skipped,
      get: (name) => byName.get(name),
      // Protobuf-framed tensors (and split/transposed q/k/v) are never mapped: always copied in.
      locate: () => null,
      read(name) {
        const t = byName.get(name);
        if (t === undefined) throw new FormatError(`${ckptPath}: no tensor for ${name}`, { where: name });
        const parts = groups.get(name)!;
        if (parts[0]!.part === undefined) return ckpt.read(parts[0]!.ms);
        const elem = DTYPE_BYTES[t.dtype];
        const rows = t.shape.length === 2 ? t.shape[0]! : 1;
        const cols = t.shape[t.shape.length - 1]!;
        const w = cols / parts.length;
        const out = new Uint8Array(rows * cols * elem);
        for (const p of parts) {
          let bytes = ckpt.read(p.ms);
          if (p.part!.transpose && t.shape.length === 2) bytes = transpose(bytes, w, rows, elem);
          for (let r = 0; r < rows; r++) out.set(bytes.subarray(r * w * elem, (r + 1) * w * elem), (r * cols + p.part!.index * w) * elem);
        }
        return out;
      },
      close: () => ckpt.close(),
    };
  } catch (err) {
    ckpt.close();
    throw err;
  }
}

export interface CkptExport {
  tensors: number;
  bytes: number;
  sha256: string;
  dtype: string;
}

/**
 * Writes the MindFormers `.ckpt` of a model's HF weights (a WeightSource already checked against `cfg`), in
 * MindFormers' order, cast to `dtype` when given (floats only). A tied lm_head is written from the embedding,
 * as transformers' state_dict (which MindFormers converts) holds it.
 */
export function writeMindFormersCkpt(o: { path: string; cfg: ModelConfig; source: WeightSource; dtype?: WeightDtype; chunkBytes?: number; onTensor?: (name: string) => void }): CkptExport {
  const mappings = mindformersTensors(o.cfg);
  const embedding = o.cfg.family === 'llama' ? 'model.embed_tokens.weight' : 'transformer.wte.weight';
  const sourceName = (hf: string): string => (o.source.get(hf) === undefined && hf === 'lm_head.weight' && o.cfg.tieWordEmbeddings ? embedding : hf);
  const specs: Array<CkptTensorSpec & { m: MsTensorMapping; from: WeightDtype }> = mappings.map((m) => {
    const t = o.source.get(sourceName(m.hf));
    if (t === undefined) throw new FormatError(`${o.source.dir}: no tensor ${m.hf} for ${m.ms}`, { where: m.hf });
    if (!isFloatDtype(t.dtype)) throw new FormatError(`${o.source.dir}: tensor ${m.hf} is ${t.dtype}; weights must be float`, { where: m.hf });
    return { name: m.ms, shape: m.msShape, dtype: o.dtype ?? t.dtype, m, from: t.dtype };
  });
  // c_attn is read once for its three parts (they follow each other in the table).
  let cached: { name: string; bytes: Uint8Array } | null = null;
  const written = writeMindSporeCkpt(
    o.path,
    specs,
    (spec) => {
      const s = spec as (typeof specs)[number];
      const name = sourceName(s.m.hf);
      if (cached === null || cached.name !== name) cached = { name, bytes: castFloat(o.source.read(name), s.from, s.dtype) };
      o.onTensor?.(s.name);
      return msBytesOf(s.m, cached.bytes, s.dtype);
    },
    o.chunkBytes === undefined ? {} : { chunkBytes: o.chunkBytes },
  );
  const dtypes = new Set(specs.map((s) => s.dtype));
  return { tensors: specs.length, bytes: written.bytes, sha256: written.sha256, dtype: dtypes.size === 1 ? [...dtypes][0]! : 'mixed' };
}
