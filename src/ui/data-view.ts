// The Data page's API: token records under the root, each row drawn token by token (input id, piece, label,
// trained or masked, BOS/EOS/padding), the preprocessing report, and search by text. A row's trained tokens
// are the records' own rule: positions j >= 1 whose label is not -100 (the loss sees labels[:, 1:]).
import { join } from 'node:path';
import { openRecords, RECORDS_MAGIC, MANIFEST_NAME, type Records, type RecordsManifest } from '../data/records.ts';
import { confinedRealPath, readConfinedText } from '../formats/confined-file.ts';
import { Tokenizer } from '../tokenizer/index.ts';
import { HttpError, MAX_DEPTH, nesting } from './http.ts';
import type { UiRoot } from './root-paths.ts';

const IGNORE = -100;

export interface RecordsSummary {
  id: string;
  rows: number;
  seq_length: number;
  dataset_type: string;
  template: string | null;
  packed: boolean;
  report: RecordsManifest['report'];
}

function manifestOf(root: UiRoot, dir: string): RecordsManifest | null {
  try {
    const m = JSON.parse(readConfinedText(join(dir, MANIFEST_NAME), { root: root.path })) as RecordsManifest;
    return m?.magic === RECORDS_MAGIC && nesting(m) <= MAX_DEPTH ? m : null;
  } catch {
    return null;
  }
}

/** Token records folders under the root, to 4 levels deep. */
export function listRecords(root: UiRoot): RecordsSummary[] {
  const out: RecordsSummary[] = [];
  root.walk(root.path, 4, (dir, entries) => {
    if (!entries.some((e) => e.isFile() && e.name === MANIFEST_NAME)) return false;
    const m = manifestOf(root, dir);
    if (m === null) return false;
    out.push({ id: root.relative(dir), rows: m.rows, seq_length: m.seq_length, dataset_type: m.dataset_type, template: m.template, packed: m.packed, report: m.report });
    return true;
  });
  return out;
}

export interface TokenCell {
  id: number;
  piece: string;
  label: number;
  /** The loss sees this token as a target (j >= 1, label != -100). */
  trained: boolean;
  kind: 'bos' | 'eos' | 'pad' | 'special' | 'text';
  segment?: number;
}

export interface RowView {
  row: number;
  tokens: TokenCell[];
  /** Label tokens the loss sees in this row. */
  trained: number;
  /** Tokens that are not padding. */
  length: number;
  /** Per packed sample (segment id), its trained tokens; one entry for an unpacked row. */
  samples: { segment: number; tokens: number; trained: number }[];
  text: string | null;
}

/** Opened records and the tokenizer found for them, kept while the server runs. */
export class DataViews {
  private readonly open = new Map<string, Records>();
  private readonly tokenizers = new Map<string, Tokenizer | null>();

  constructor(private readonly root: UiRoot) {}

  /** The records at `id`, every file checked to lie inside the root before it is mapped. */
  records(id: string): Records {
    const dir = this.root.resolve(id);
    const key = this.root.relative(dir);
    const cached = this.open.get(key);
    if (cached) return cached;
    const m = manifestOf(this.root, dir);
    if (m === null) throw new HttpError(404, `${id}: not a token records folder (no ${MANIFEST_NAME} of sftkit records)`);
    for (const s of m.shards ?? []) {
      for (const f of Object.values(s.files ?? {})) {
        if (typeof f?.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(f.name)) throw new HttpError(400, `${id}/${MANIFEST_NAME}: a shard file name is not a plain name`);
        try {
          confinedRealPath(join(dir, f.name), { root: this.root.path });
        } catch (err) {
          throw new HttpError(/outside/.test((err as Error).message) ? 403 : 404, `${id}/${f.name}: ${(err as Error).message}`);
        }
      }
    }
    const r = openRecords(dir);
    this.open.set(key, r);
    return r;
  }

  /**
   * The tokenizer these records were made with: the first tokenizer folder under the root whose identity is
   * the manifest's (identity is over the vocabulary, so a checkpoint's copy matches). Null when none is found.
   */
  tokenizerFor(records: Records): Tokenizer | null {
    const want = records.manifest.tokenizer.identity;
    if (this.tokenizers.has(want)) return this.tokenizers.get(want) ?? null;
    let found: Tokenizer | null = null;
    this.root.walk(this.root.path, 5, (dir, entries) => {
      if (found !== null) return true;
      if (!entries.some((e) => e.isFile() && (e.name === 'tokenizer.model' || e.name === 'tokenizer.json'))) return false;
      try {
        for (const f of ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json']) {
          if (entries.some((e) => e.name === f)) confinedRealPath(join(dir, f), { root: this.root.path });
        }
        const tok = Tokenizer.fromDir(dir);
        if (tok.identity === want || tok.earlierIdentities().includes(want)) found = tok;
      } catch {
        // not a usable tokenizer folder: keep looking
      }
      return true;
    });
    this.tokenizers.set(want, found);
    return found;
  }

  rowView(id: string, row: number): RowView {
    const records = this.records(id);
    if (row >= records.rows) throw new HttpError(404, `${id}: row ${row} out of range [0, ${records.rows})`);
    return drawRow(records, this.tokenizerFor(records), row);
  }

  /** Trained-token counts of `count` rows from `from` (the row list). */
  rowCounts(id: string, from: number, count: number): { row: number; length: number; trained: number }[] {
    const records = this.records(id);
    const out = [];
    for (let row = from; row < Math.min(records.rows, from + count); row++) {
      const { inputIds, labels, segmentIds } = records.row(row);
      out.push({ row, length: nonPadding(records, inputIds, labels, segmentIds).length, trained: trainedCount(labels) });
    }
    return out;
  }

  /** Rows whose decoded text contains `query` (case-insensitive), at most `limit`, with a snippet each. */
  search(id: string, query: string, limit: number): { row: number; snippet: string; trained: number }[] {
    const records = this.records(id);
    const tok = this.tokenizerFor(records);
    if (tok === null) throw new HttpError(422, `${id}: no tokenizer with this records' identity under the root, so its text cannot be searched`);
    const needle = query.toLowerCase();
    if (needle === '') return [];
    const out = [];
    for (let row = 0; row < records.rows && out.length < limit; row++) {
      const { inputIds, labels, segmentIds } = records.row(row);
      const text = tok.decode(nonPadding(records, inputIds, labels, segmentIds).map((i) => inputIds[i] as number), { skipSpecial: true });
      const at = text.toLowerCase().indexOf(needle);
      if (at < 0) continue;
      out.push({ row, snippet: text.slice(Math.max(0, at - 40), at + needle.length + 40), trained: trainedCount(labels) });
    }
    return out;
  }

  close(): void {
    for (const r of this.open.values()) r.close();
    this.open.clear();
  }
}

function trainedCount(labels: Int32Array): number {
  let n = 0;
  for (let j = 1; j < labels.length; j++) if (labels[j] !== IGNORE) n++;
  return n;
}

/**
 * Positions that are not padding: with segment ids, those of a segment; without, all but the trailing run of
 * pad ids whose labels are -100 (a trained pad id is a real token, e.g. GPT-2's EOS used as pad).
 */
function nonPadding(records: Records, ids: Int32Array, labels: Int32Array, segments: Int32Array | undefined): number[] {
  const keep: number[] = [];
  if (segments) {
    for (let j = 0; j < ids.length; j++) if (segments[j] !== 0) keep.push(j);
    return keep;
  }
  let end = ids.length;
  while (end > 0 && ids[end - 1] === records.manifest.pad_id && labels[end - 1] === IGNORE) end--;
  // Text records fill whole rows: a row that ends on the pad id is content, not padding, when it is full.
  for (let j = 0; j < end; j++) keep.push(j);
  return keep;
}

function drawRow(records: Records, tok: Tokenizer | null, row: number): RowView {
  const { inputIds, labels, segmentIds } = records.row(row);
  const content = new Set(nonPadding(records, inputIds, labels, segmentIds));
  const { bos_id: bos, eos_id: eos } = records.manifest.tokenizer;
  const tokens: TokenCell[] = [];
  const samples = new Map<number, { segment: number; tokens: number; trained: number }>();
  for (let j = 0; j < inputIds.length; j++) {
    const id = inputIds[j] as number;
    const label = labels[j] as number;
    const trained = j >= 1 && label !== IGNORE;
    let kind: TokenCell['kind'] = 'text';
    if (!content.has(j)) kind = 'pad';
    else if (id === bos) kind = 'bos';
    else if (id === eos) kind = 'eos';
    else if (tok?.isSpecial(id)) kind = 'special';
    const segment = segmentIds ? (segmentIds[j] as number) : 1;
    tokens.push({ id, piece: tok ? tok.idToPiece(id) : String(id), label, trained, kind, ...(segmentIds ? { segment } : {}) });
    if (segment === 0) continue;
    const s = samples.get(segment) ?? { segment, tokens: 0, trained: 0 };
    if (kind !== 'pad') s.tokens++;
    if (trained) s.trained++;
    samples.set(segment, s);
  }
  const ids = [...content].map((j) => inputIds[j] as number);
  return {
    row,
    tokens,
    trained: trainedCount(labels),
    length: content.size,
    samples: [...samples.values()],
    text: tok ? tok.decode(ids, { skipSpecial: false }) : null,
  };
}
