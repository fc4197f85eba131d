// Where preprocess reads its samples from: JSONL / JSON-array files (streamed), Parquet files (row group by row
// group, through hyparquet) and text files (paragraph by paragraph), and the weighted mixing of several sources,
// as HF datasets' `interleave_datasets` and LLaMA-Factory's `mix_strategy` do it. Memory stays bounded by one
// record (or one Parquet row group), whatever the size of the input.
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { ConfigError, DataError } from '../errors.ts';
import { expandGlob } from './glob.ts';
import { streamJsonRecords, streamLines, type SourcedRecord } from './json-input.ts';

/** One `--input` source: a file or glob, with its sampling weight when sources are mixed. */
export interface InputSource {
  pattern: string;
  weight?: number;
}

/** `concat`: sources one after another; `interleave_under`: weighted, stop when the first source runs out; `interleave_over`: weighted, restart exhausted sources until every one has run out once. */
export type MixStrategy = 'concat' | 'interleave_under' | 'interleave_over';
export const MIX_STRATEGIES: readonly MixStrategy[] = ['concat', 'interleave_under', 'interleave_over'];

/** `path`, or `path:weight` (a positive number after the last colon). */
export function parseInputSpec(spec: string): InputSource {
  const m = /^(.*):([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)$/i.exec(spec);
  if (m === null) return { pattern: spec };
  const weight = Number(m[2]);
  if (!(weight > 0) || !Number.isFinite(weight)) throw new ConfigError(`--input ${spec}: the weight must be a positive number`, { where: '--input' });
  return { pattern: m[1]!, weight };
}

const isParquet = (file: string): boolean => /\.parquet$/i.test(file);
const isJson = (file: string): boolean => /\.(jsonl|json|ndjson)$/i.test(file);

/** Rows of a Parquet file as objects, one row group in memory at a time; errors name the file. */
async function* parquetRecords(file: string): AsyncGenerator<SourcedRecord> {
  const fail = (err: unknown, what: string): DataError =>
    new DataError(`${file}: cannot read Parquet ${what} (${(err as Error)?.message ?? String(err)})`, { where: file, hint: 'is it a Parquet file?' });
  let buffer: Awaited<ReturnType<typeof asyncBufferFromFile>>;
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    buffer = await asyncBufferFromFile(file);
    metadata = await parquetMetadataAsync(buffer);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== undefined) throw new DataError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code})`, { where: file });
    throw fail(err, 'metadata');
  }
  let row = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = row + Number(group.num_rows);
    let rows: Array<Record<string, unknown>>;
    try {
      rows = await parquetReadObjects({ file: buffer, metadata, rowStart: row, rowEnd });
    } catch (err) {
      throw fail(err, `rows ${row}-${rowEnd - 1}`);
    }
    for (const value of rows) {
      yield { value, index: row, where: `${file}[row ${row}]` };
      row++;
    }
  }
}

/** Records of one JSONL / JSON-array / Parquet file. */
export async function* fileRecords(file: string): AsyncGenerator<SourcedRecord> {
  if (isParquet(file)) yield* parquetRecords(file);
  else yield* streamJsonRecords(file);
}

/** Records of every file of a source, in glob order. */
async function* sourceRecords(pattern: string): AsyncGenerator<SourcedRecord> {
  for (const file of expandGlob(pattern)) yield* fileRecords(file);
}

/**
 * Paragraphs of a text file, split on blank lines (lines of only whitespace), exactly as
 * `text.split(/\n(?:[ \t\r\f\v]*\n)+/)` splits the whole text, read line by line.
 */
export function* textParagraphs(file: string): Generator<string> {
  const isBlank = (line: string): boolean => /^[ \t\r\f\v]*$/.test(line);
  let current: string[] | null = null;
  // Blank lines after `current`: a separator once a line follows them.
  let blanks: string[] = [];
  const emit = (lines: string[]): string | null => {
    const p = lines.join('\n');
    return p.trim() === '' ? null : p;
  };
  for (const line of streamLines(file)) {
    if (current === null) current = [line];
    else if (isBlank(line)) blanks.push(line);
    else if (blanks.length > 0) {
      const p = emit(current);
      if (p !== null) yield p;
      current = [line];
      blanks = [];
    } else current.push(line);
  }
  if (current === null) return;
  // The file's last line ends no separator: a single trailing blank line belongs to the paragraph.
  if (blanks.length === 1) current.push(blanks[0]!);
  const p = emit(current);
  if (p !== null) yield p;
}

/** Text samples of a source for wiki/text data: paragraphs of text files, the `text` field of each JSON / Parquet record. */
async function* sourceTexts(pattern: string): AsyncGenerator<{ text: string; where: string }> {
  for (const file of expandGlob(pattern)) {
    if (isParquet(file) || isJson(file)) {
      for await (const rec of fileRecords(file)) {
        const text = (rec.value as Record<string, unknown> | null)?.['text'];
        if (typeof text !== 'string') throw new DataError(`${rec.where}: expected an object with a string "text" field`, { where: rec.where, hint: 'text datasets in JSON or Parquet need a "text" column' });
        // A record is one document (TRL's dataset_text_field): one sample, not split into paragraphs.
        if (text.trim() !== '') yield { text, where: rec.where };
      }
    } else {
      let n = 0;
      for (const text of textParagraphs(file)) yield { text, where: `${file} paragraph ${++n}` };
    }
  }
}

/** A small seeded generator (mulberry32): the mix is the same on every run with the same seed. */
function seededRandom(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface MixOptions {
  strategy: MixStrategy;
  seed: number;
}

/**
 * Items of several sources: one after another (`concat`), or drawn at random with the sources' weights
 * (`interleave_under`: stop when a drawn source has run out; `interleave_over`: a source that runs out starts
 * again, until every source has run out once). `open(i)` starts source i from its beginning.
 */
export async function* mixSources<T>(count: number, open: (i: number) => AsyncIterator<T>, weights: readonly number[], o: MixOptions): AsyncGenerator<{ item: T; source: number }> {
  if (o.strategy === 'concat' || count === 1) {
    for (let i = 0; i < count; i++) {
      const it = open(i);
      for (let r = await it.next(); r.done !== true; r = await it.next()) yield { item: r.value, source: i };
    }
    return;
  }
  const total = weights.reduce((a, b) => a + b, 0);
  const cumulative = weights.map(((sum) => (w: number) => (sum += w / total))(0));
  const random = seededRandom(o.seed);
  const iterators = Array.from({ length: count }, (_, i) => open(i));
  const exhausted = new Array<boolean>(count).fill(false);
  const yielded = new Array<number>(count).fill(0);
  for (;;) {
    const x = random();
    let i = cumulative.findIndex((c) => x < c);
    if (i < 0) i = count - 1;
    let r = await iterators[i]!.next();
    if (r.done === true) {
      if (yielded[i] === 0) throw new DataError(`input source ${i + 1} has no samples`, { where: '--input' });
      exhausted[i] = true;
      if (o.strategy === 'interleave_under' || exhausted.every(Boolean)) return;
      iterators[i] = open(i);
      r = await iterators[i]!.next();
      if (r.done === true) return;
    }
    yielded[i]!++;
    yield { item: r.value, source: i };
  }
}

function checkSources(sources: readonly InputSource[], o: MixOptions): number[] {
  if (sources.length === 0) throw new ConfigError('data preprocess: give --input_glob or at least one --input', { where: '--input' });
  const weighted = sources.filter((s) => s.weight !== undefined).length;
  if (weighted > 0 && weighted < sources.length) {
    throw new ConfigError('--input: give a weight to every source (path:weight) or to none', { where: '--input' });
  }
  if (weighted > 0 && o.strategy === 'concat' && sources.length > 1) {
    throw new ConfigError('--input weights need --mix_strategy interleave_under or interleave_over (concat takes every sample once, in order)', { where: '--mix_strategy' });
  }
  return sources.map((s) => s.weight ?? 1);
}

/** Conversation records of all sources, mixed. */
export function mixedRecords(sources: readonly InputSource[], o: MixOptions): AsyncGenerator<{ item: SourcedRecord; source: number }> {
  const weights = checkSources(sources, o);
  return mixSources(sources.length, (i) => sourceRecords(sources[i]!.pattern), weights, o);
}

/** Text samples (paragraphs or `text` fields) of all sources, mixed. */
export function mixedTexts(sources: readonly InputSource[], o: MixOptions): AsyncGenerator<{ item: { text: string; where: string }; source: number }> {
  const weights = checkSources(sources, o);
  return mixSources(sources.length, (i) => sourceTexts(sources[i]!.pattern), weights, o);
}
