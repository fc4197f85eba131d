// The weights of an HF-style folder (or a sftkit checkpoint), whatever their layout: model.safetensors,
// safetensors shards + index, pytorch_model.bin, or .bin shards + index. Tensor names are unique across
// shards and must agree with the index; tensors are read one at a time.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError, describeValue } from '../errors.ts';
import { readConfinedText } from './confined-file.ts';
import type { WeightDtype } from './dtypes.ts';
import { duplicateKeys } from './json-duplicates.ts';
import { type SafetensorsFile, openSafetensors } from './safetensors.ts';
import type { TensorFile, TensorInfo } from './tensor-file.ts';
import { openTorchBin } from './torch-bin.ts';

/**
 * 'mindspore': a MindFormers .ckpt read through its name table (src/convert/mindspore.ts); 'merged': a LoRA
 * checkpoint's base with its adapter folded in, held in memory for export (src/convert/merge-lora.ts).
 */
export type WeightFormat = 'safetensors' | 'pytorch' | 'mindspore' | 'merged';

export interface WeightTensor extends TensorInfo {
  /** The file holding it, relative to the folder. */
  file: string;
}

export interface WeightSource {
  readonly dir: string;
  readonly format: WeightFormat;
  /** Every tensor, in file then data order. */
  readonly tensors: readonly WeightTensor[];
  get(name: string): WeightTensor | undefined;
  read(name: string): Uint8Array;
  /**
   * Where a tensor's raw bytes lie in its file (safetensors: contiguous little-endian at `begin`), for a
   * memory mapping; null for formats whose tensors are not stored that way (PyTorch .bin).
   */
  locate(name: string): { path: string; begin: number; end: number } | null;
  close(): void;
}

const LAYOUTS: Array<{ file: string; format: WeightFormat; index: boolean }> = [
  { file: 'model.safetensors.index.json', format: 'safetensors', index: true },
  { file: 'model.safetensors', format: 'safetensors', index: false },
  { file: 'pytorch_model.bin.index.json', format: 'pytorch', index: true },
  { file: 'pytorch_model.bin', format: 'pytorch', index: false },
];

/** The weight files HF may hold, in the order transformers prefers them. */
export const WEIGHT_FILE_NAMES = LAYOUTS.map((l) => l.file);

/** Reads `{"weight_map": {tensor: shard}}`, checking the shard names are plain file names. */
export function readShardIndex(path: string): Map<string, string> {
  let text: string;
  let json: unknown;
  try {
    text = readConfinedText(path);
    json = JSON.parse(text);
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw new FormatError(`${path}: cannot read index (${(err as Error).message})`, { where: path });
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new FormatError(`${path}: no "weight_map" object`, { where: path });
  const dups = duplicateKeys(text, 2);
  if (dups.length > 0) throw new FormatError(`${path}: tensor ${dups[0]} is listed twice`, { where: `${path}: ${dups[0]}` });
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '' || file.includes('/') || file.includes('\\') || file === '.' || file === '..') {
      throw new FormatError(`${path}: tensor ${name} maps to ${describeValue(file)}, which is not a file name in this folder`, { where: `${path}: ${name}` });
    }
    out.set(name, file);
  }
  return out;
}

function openFile(path: string, format: WeightFormat): TensorFile {
  return format === 'safetensors' ? openSafetensors(path) : openTorchBin(path);
}

export function openWeightSource(dir: string): WeightSource {
  const layout = LAYOUTS.find((l) => existsSync(join(dir, l.file)));
  if (layout === undefined) {
    throw new FormatError(`${dir}: no weights found (looked for ${WEIGHT_FILE_NAMES.join(', ')})`, { where: dir });
  }
  const files = new Map<string, TensorFile>();
  const closeAll = (): void => files.forEach((f) => f.close());
  try {
    const tensors: WeightTensor[] = [];
    const byName = new Map<string, WeightTensor>();
    const add = (fileName: string, f: TensorFile): void => {
      for (const t of f.tensors) {
        const prev = byName.get(t.name);
        if (prev !== undefined) {
          throw new FormatError(`${join(dir, fileName)}: tensor ${t.name} is also in ${prev.file}`, { where: `${join(dir, fileName)}: ${t.name}` });
        }
        const w: WeightTensor = { name: t.name, dtype: t.dtype as WeightDtype, shape: t.shape, file: fileName };
        tensors.push(w);
        byName.set(t.name, w);
      }
    };
    if (layout.index) {
      const indexPath = join(dir, layout.file);
      const map = readShardIndex(indexPath);
      const shardNames = [...new Set(map.values())];
      for (const shard of shardNames) {
        const p = join(dir, shard);
        if (!existsSync(p)) throw new FormatError(`${indexPath}: shard ${shard} is listed but missing`, { where: p });
        const f = openFile(p, layout.format);
        files.set(shard, f);
        add(shard, f);
      }
      for (const [name, shard] of map) {
        const t = byName.get(name);
        if (t === undefined) throw new FormatError(`${indexPath}: tensor ${name} is listed in ${shard} but not there`, { where: `${join(dir, shard)}: ${name}` });
        if (t.file !== shard) throw new FormatError(`${indexPath}: tensor ${name} is listed in ${shard} but found in ${t.file}`, { where: name });
      }
      for (const t of tensors) {
        if (!map.has(t.name)) throw new FormatError(`${join(dir, t.file)}: tensor ${t.name} is not in the index ${layout.file}`, { where: t.name });
      }
    } else {
      const f = openFile(join(dir, layout.file), layout.format);
      files.set(layout.file, f);
      add(layout.file, f);
    }
    return {
      dir,
      format: layout.format,
      tensors,
      get: (name) => byName.get(name),
      read(name) {
        const t = byName.get(name);
        if (t === undefined) throw new FormatError(`${dir}: no tensor ${name}`, { where: name });
        return files.get(t.file)!.read(name);
      },
      locate(name) {
        const t = byName.get(name);
        if (t === undefined || layout.format !== 'safetensors') return null;
        const e = (files.get(t.file) as SafetensorsFile).get(name);
        return e ? { path: join(dir, t.file), begin: e.begin, end: e.end } : null;
      },
      close: closeAll,
    };
  } catch (err) {
    closeAll();
    throw err;
  }
}
