// The Data page's API: token records under the root, each row drawn token by token (input id, piece, label,
// trained or masked, BOS/EOS/padding), the preprocessing report, and search by text. A row's trained tokens
// are the records' own rule: positions j >= 1 whose label is not -100 (the loss sees labels[:, 1:]).
import { lstatSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { preprocess } from '../data/preprocess.ts';
import { openRecords, RECORDS_MAGIC, MANIFEST_NAME, type Records, type RecordsManifest } from '../data/records.ts';
import { TEMPLATE_NAMES, type TemplateName } from '../data/templates.ts';
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

/** Ids of records tokenized here from a conversation file (they live in a temp folder, outside the root). */
const TOKENIZED = /^@tokenized\/\d+$/;
/** Samples a conversation file is tokenized from, at most: the view is for looking, not for training. */
const MAX_SAMPLES = 5000;
const MAX_INPUT_BYTES = 64 << 20;

export interface TokenizeRequest {
  /** A conversation file (JSON array or JSONL of MindFormers conversations) under the root. */
  file: string;
  /** A folder under the root with the tokenizer files (a checkpoint). */
  tokenizer: string;
  template: string;
  seq_length: number;
}

/** Opened records and the tokenizer found for them, kept while the server runs. */
export class DataViews {
  private readonly open = new Map<string, { records: Records; stamp: string }>();
  /** Tokenizers by identity (found, or made for a tokenized view). */
  private readonly tokenizers = new Map<string, Tokenizer>();
  /** Every tokenizer folder looked at, by its path and its files' mtimes (null: not loadable). */
  private readonly byDir = new Map<string, { stamp: string; tok: Tokenizer | null }>();
  private readonly temps: string[] = [];

  constructor(private readonly root: UiRoot) {}

  /**
   * A conversation file tokenized with a tokenizer and template into records of seq_length + 1, as `sftkit data
   * preprocess` would (the same code), in a temp folder; answers the id to view them by and their report.
   */
  async tokenize(body: unknown): Promise<{ id: string; report: RecordsManifest['report'] }> {
    const b = (typeof body === 'object' && body !== null ? body : {}) as Partial<Record<keyof TokenizeRequest, unknown>>;
    if (typeof b.file !== 'string' || b.file === '') throw new HttpError(400, "'file' must name a conversation file under the root", 'file');
    if (typeof b.tokenizer !== 'string' || b.tokenizer === '') throw new HttpError(400, "'tokenizer' must name a folder with tokenizer files under the root", 'tokenizer');
    if (typeof b.template !== 'string' || !(TEMPLATE_NAMES as readonly string[]).includes(b.template)) throw new HttpError(400, `'template' must be one of ${TEMPLATE_NAMES.join(', ')}`, 'template');
    if (!Number.isInteger(b.seq_length) || (b.seq_length as number) < 2 || (b.seq_length as number) > 65536) throw new HttpError(400, "'seq_length' must be an integer in [2, 65536]", 'seq_length');
    const file = this.root.resolve(b.file);
    // preprocess takes a glob: the real path goes in only when it holds no glob character.
    if (/[*?[\]{}!]/.test(file)) throw new HttpError(400, `${b.file}: a file name with glob characters (*?[]{}!) cannot be tokenized here`, 'file');
    const st = statSync(file);
    if (!st.isFile()) throw new HttpError(400, `${b.file}: not a file`, 'file');
    if (st.size > MAX_INPUT_BYTES) throw new HttpError(413, `${b.file}: larger than ${MAX_INPUT_BYTES >> 20} MB; preprocess it with sftkit data preprocess and open the records`, 'file');
    const tokDir = this.root.resolve(b.tokenizer);
    for (const f of ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json']) {
      try {
        confinedRealPath(join(tokDir, f), { root: this.root.path });
      } catch (err) {
        if (/outside/.test((err as Error).message)) throw new HttpError(403, `${b.tokenizer}/${f}: a symlink leads outside the root`, 'tokenizer');
      }
    }
    const tokenizer = Tokenizer.fromDir(tokDir);
    const temp = mkdtempSync(join(tmpdir(), 'sftkit-ui-records-'));
    this.temps.push(temp);
    const out = join(temp, 'records');
    const { report } = await preprocess({ datasetType: 'qa', inputGlob: file, tokenizer, seqLength: b.seq_length as number, outputDir: out, template: b.template as TemplateName, truncation: 'right', samplesNum: MAX_SAMPLES });
    const id = `@tokenized/${this.temps.length}`;
    this.open.set(id, { records: openRecords(out), stamp: '' });
    this.tokenizers.set(tokenizer.identity, tokenizer);
    return { id, report };
  }

  /** The records at `id`, every file checked to lie inside the root before it is mapped. */
  records(id: string): Records {
    if (TOKENIZED.test(id)) {
      const r = this.open.get(id);
      if (!r) throw new HttpError(404, `${id}: no such tokenized view (they last while the server runs)`);
      return r.records;
    }
    const dir = this.root.resolve(id);
    const key = this.root.relative(dir);
    // Records rewritten in place (preprocess --force) are opened again.
    const stamp = stampOf([join(dir, MANIFEST_NAME)]);
    const cached = this.open.get(key);
    if (cached && cached.stamp === stamp) return cached.records;
    if (cached) {
      cached.records.close();
      this.open.delete(key);
    }
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
    this.open.set(key, { records: r, stamp });
    return r;
  }

  /**
   * The tokenizer these records were made with: the first tokenizer folder under the root whose identity is
   * the manifest's (identity is over the vocabulary, so a checkpoint's copy matches). Null when none is found.
   */
  tokenizerFor(records: Records): Tokenizer | null {
    const want = records.manifest.tokenizer.identity;
    const known = this.tokenizers.get(want);
    if (known) return known;
    // Each folder's tokenizer is loaded once (until its files change): a miss costs a walk, not a reload.
    let found: Tokenizer | null = null;
    this.root.walk(this.root.path, 5, (dir, entries) => {
      if (found !== null) return true;
      const files = ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json'].filter((f) => entries.some((e) => e.isFile() && e.name === f));
      if (!files.some((f) => f !== 'tokenizer_config.json')) return false;
      const stamp = stampOf(files.map((f) => join(dir, f)));
      let entry = this.byDir.get(dir);
      if (entry?.stamp !== stamp) {
        let tok: Tokenizer | null = null;
        try {
          for (const f of files) confinedRealPath(join(dir, f), { root: this.root.path });
          tok = Tokenizer.fromDir(dir);
        } catch {
          tok = null; // not a usable tokenizer folder: keep looking
        }
        entry = { stamp, tok };
        this.byDir.set(dir, entry);
      }
      if (entry.tok && (entry.tok.identity === want || entry.tok.earlierIdentities().includes(want))) found = entry.tok;
      return true;
    });
    if (found !== null) this.tokenizers.set(want, found);
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
    for (const r of this.open.values()) r.records.close();
    this.open.clear();
    for (const t of this.temps.splice(0)) rmSync(t, { recursive: true, force: true });
  }
}

/** Sizes and mtimes of files: what says a cached reading of them is stale. */
function stampOf(paths: readonly string[]): string {
  return paths
    .map((p) => {
      try {
        const st = lstatSync(p);
        return `${st.size}:${st.mtimeMs}`;
      } catch {
        return '-';
      }
    })
    .join('|');
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
