// `sftkit data preprocess`: conversations (qa) or raw text (wiki, text) into token records, with a report.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeDirAtomically } from '../formats/checkpoint-dir.ts';
import { MindRecordWriter } from '../formats/mindrecord.ts';
import { ConfigError, DataError } from '../errors.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { ALPACA_PROMPT_INPUT_HEAD, ALPACA_PROMPT_NO_INPUT_HEAD } from './alpaca.ts';
import { parseConversation, type Conversation } from './conversation.ts';
import { HfTemplateEncoder } from './hf-template.ts';
import { PartEncoder, type ChatEncoder } from './qa-tokenize.ts';
import { RecordsWriter, type RecordsManifest } from './records.ts';
import { countDrop, emptyReport, type PreprocessReport } from './report.ts';
import { RowAssembler, StreamChunker, type RowSink, type Truncation } from './rows.ts';
import { mixedRecords, mixedTexts, MIX_STRATEGIES, type InputSource, type MixStrategy } from './sources.ts';
import { checkTemplateName, PART_TEMPLATES, type TemplateName } from './templates.ts';

export type DatasetType = 'qa' | 'wiki' | 'text';

export interface PreprocessOptions {
  datasetType: DatasetType;
  /** One source: a file or glob (the `--input_glob` form). */
  inputGlob?: string;
  /** Several sources (`--input path[:weight]`), mixed by `mixStrategy`; instead of inputGlob. */
  inputs?: InputSource[];
  /** How several sources are combined (default: interleave_under when weights are given, else concat). */
  mixStrategy?: MixStrategy;
  /** Seed of the weighted mix (default 0). */
  seed?: number;
  tokenizer: Tokenizer;
  seqLength: number;
  outputDir: string;
  /** qa only (default vicuna). */
  template?: TemplateName;
  packing?: boolean;
  truncation?: Truncation;
  /** Use only the first N samples (conversations, or paragraphs for wiki/text) of the input. */
  samplesNum?: number;
  /** Pass over the (limited) input K times. */
  repeat?: number;
  /** Called every so many samples, for progress output. */
  onProgress?: (samplesIn: number) => void;
  /** Replace existing token records at outputDir (only token records: a folder without their manifest is refused). */
  force?: boolean;
}

export interface PreprocessResult {
  manifest: RecordsManifest;
  report: PreprocessReport;
}

/** The tokenizer's pad id per the contract: pad, else unk, else EOS. */
export function padIdOf(tok: Tokenizer): number {
  const id = tok.padId ?? tok.unkId ?? tok.eosId;
  if (id === null) throw new ConfigError('the tokenizer has no pad, unk or EOS token to pad rows with', { where: 'tokenizer' });
  return id;
}

export function chatEncoder(tok: Tokenizer, template: TemplateName): ChatEncoder {
  if (template === 'hf') return new HfTemplateEncoder(tok);
  return new PartEncoder(tok, PART_TEMPLATES[template] as NonNullable<(typeof PART_TEMPLATES)[string]>);
}

/** Paragraphs of a text: split on blank lines (lines of only whitespace count as blank). */
export function paragraphs(text: string): string[] {
  return text.split(/\n(?:[ \t\r\f\v]*\n)+/).filter((p) => p.trim() !== '');
}

function checkOptions(o: PreprocessOptions): void {
  if (!['qa', 'wiki', 'text'].includes(o.datasetType)) throw new ConfigError(`--dataset_type must be qa, wiki or text (got ${o.datasetType})`, { where: '--dataset_type' });
  if (!Number.isInteger(o.seqLength) || o.seqLength < 1) throw new ConfigError(`--seq_length must be a positive integer (got ${o.seqLength})`, { where: '--seq_length' });
  if (o.truncation !== undefined && o.truncation !== 'right' && o.truncation !== 'drop') {
    throw new ConfigError(`--truncation must be right or drop (got ${o.truncation})`, { where: '--truncation' });
  }
  if (o.samplesNum !== undefined && (!Number.isInteger(o.samplesNum) || o.samplesNum < 1)) throw new ConfigError(`--samples_num must be a positive integer`, { where: '--samples_num' });
  if (o.repeat !== undefined && (!Number.isInteger(o.repeat) || o.repeat < 1)) throw new ConfigError(`--repeat must be a positive integer`, { where: '--repeat' });
  if (o.template !== undefined) checkTemplateName(o.template);
  if (o.template !== undefined && o.datasetType !== 'qa') throw new ConfigError('--template applies to --dataset_type qa only', { where: '--template' });
  if ((o.inputGlob === undefined) === (o.inputs === undefined || o.inputs.length === 0)) {
    throw new ConfigError('data preprocess: give either --input_glob or one or more --input', { where: '--input' });
  }
  if (o.mixStrategy !== undefined && !MIX_STRATEGIES.includes(o.mixStrategy)) {
    throw new ConfigError(`--mix_strategy must be ${MIX_STRATEGIES.join(', ')} (got ${o.mixStrategy})`, { where: '--mix_strategy' });
  }
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new ConfigError(`--seed must be an integer (got ${o.seed})`, { where: '--seed' });
}

/**
 * The model's position limit, when its folder says it: config.json's max_position_embeddings (n_positions for
 * GPT-2), else tokenizer_config.json's model_max_length (ignoring the huge "no limit" values transformers writes).
 * Unreadable files count as silent: this only feeds a warning.
 */
export function modelMaxPositions(dir: string): { value: number; field: string; file: string } | null {
  const read = (name: string): Record<string, unknown> | null => {
    try {
      const v = JSON.parse(readFileSync(join(dir, name), 'utf8')) as unknown;
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  };
  const config = read('config.json');
  for (const field of ['max_position_embeddings', 'n_positions']) {
    const v = config?.[field];
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return { value: v, field, file: join(dir, 'config.json') };
  }
  const v = read('tokenizer_config.json')?.['model_max_length'];
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 && v < 1e7) return { value: v, field: 'model_max_length', file: join(dir, 'tokenizer_config.json') };
  return null;
}

/** The smallest power of two at or above n (a --seq_length to suggest). */
function powerOfTwoAtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Why no row was written, and what to change. */
function noRowsError(o: PreprocessOptions, input: string, report: PreprocessReport, rows: RowAssembler, chunkedTokens: number): DataError {
  const counts = `${report.samples_in} samples in, ${report.dropped.count} dropped, ${report.tail_tokens_dropped} tail tokens`;
  const L = o.seqLength + 1;
  let why = '';
  let hint = 'check the input, --seq_length and --truncation';
  if (report.samples_in === 0) {
    why = 'the input holds no samples';
    hint = 'check the input files (empty files, or --samples_num)';
  } else if (rows.shortestTooLong !== null && report.dropped.count === report.samples_in) {
    // Every sample was dropped for its length (--truncation drop), or kept no trained token once cut at the right.
    const need = rows.shortestTooLong - 1;
    const what = o.truncation === 'drop' ? 'dropped (--truncation drop)' : 'left with nothing to train once cut (the prompt fills the row)';
    why = `every sample is longer than ${o.seqLength} tokens after the template (rows hold seq_length + 1 = ${L}): the shortest is ${rows.shortestTooLong}, so all were ${what}`;
    hint = `use --seq_length ${powerOfTwoAtLeast(need)} or more (${need} is the least that fits the shortest sample)`;
  } else if (chunkedTokens > 0 && chunkedTokens < L) {
    why = `the input has ${chunkedTokens} tokens in all, less than one row of seq_length + 1 = ${L}`;
    hint = `use --seq_length ${Math.max(1, chunkedTokens - 1)} or less, --packing, or more text`;
  }
  return new DataError(`${input}: no rows to write${why === '' ? '' : `: ${why}`} (${counts})`, { where: input, hint });
}

/** A conversation whose first user message is a whole Stanford Alpaca prompt (the alpaca converter's output). */
function isAlpacaPrompted(conv: Conversation): boolean {
  const first = conv.rounds[0]?.user ?? '';
  return (first.startsWith(ALPACA_PROMPT_NO_INPUT_HEAD) || first.startsWith(ALPACA_PROMPT_INPUT_HEAD)) && first.endsWith('### Response:');
}

interface Prepared {
  template: TemplateName | null;
  padId: number;
  packing: boolean;
  report: PreprocessReport;
  /** The inputs in words, for errors. */
  input: string;
  /** Conversations all in the Alpaca prompt format (checked in a first pass), for the records' manifest. */
  promptFormat: 'alpaca' | null;
  sources: InputSource[];
  mix: { strategy: MixStrategy; seed: number };
}

/**
 * Checks the options and, for conversations, reads the input once to validate every sample (a bad one stops the
 * run before any work is wasted) and to learn the prompt format.
 */
async function prepare(o: PreprocessOptions): Promise<Prepared> {
  checkOptions(o);
  const sources: InputSource[] = o.inputs !== undefined && o.inputs.length > 0 ? o.inputs : [{ pattern: o.inputGlob as string }];
  const mix = { strategy: o.mixStrategy ?? (sources.some((s) => s.weight !== undefined) ? 'interleave_under' : 'concat'), seed: o.seed ?? 0 } as const;
  const p: Prepared = {
    template: o.datasetType === 'qa' ? (o.template ?? 'vicuna') : null,
    padId: padIdOf(o.tokenizer),
    packing: o.packing === true,
    report: emptyReport(),
    input: o.inputGlob ?? sources.map((s) => s.pattern).join(', '),
    promptFormat: null,
    sources,
    mix,
  };
  if (p.template !== null) {
    let all = 0, alpaca = 0;
    for await (const conv of conversationsOf(o, p)) {
      all++;
      if (isAlpacaPrompted(conv)) alpaca++;
    }
    p.promptFormat = all > 0 && alpaca === all ? 'alpaca' : null;
  }
  return p;
}

/** The input's conversations, streamed (never held whole); the mix is seeded, so every pass sees the same order. */
async function* conversationsOf(o: PreprocessOptions, p: Prepared): AsyncGenerator<Conversation> {
  const limit = o.samplesNum ?? Infinity;
  let taken = 0;
  for await (const { item } of mixedRecords(p.sources, p.mix)) {
    if (taken++ >= limit) return;
    yield parseConversation(item);
  }
}

/** Tokenizes the input into rows pushed to `sink`, counting everything in the report. */
async function produceRows(o: PreprocessOptions, p: Prepared, sink: RowSink): Promise<void> {
  const tok = o.tokenizer;
  const { template, padId, packing, report } = p;
  const encoder = template === null ? null : chatEncoder(tok, template);
  const repeat = o.repeat ?? 1;
  const limit = o.samplesNum ?? Infinity;
  const progress = (): void => {
    if (o.onProgress !== undefined && report.samples_in % 1000 === 0) o.onProgress(report.samples_in);
  };
  const rowOpts = { rowLength: o.seqLength + 1, padId, packing, truncation: o.truncation ?? 'right', maskSegmentStart: template === null };
  const rows = new RowAssembler(rowOpts, sink, report);
  const chunker = new StreamChunker(o.seqLength + 1, sink, report);
  let chunkedTokens = 0;
  if (encoder !== null) {
    for (let pass = 0; pass < repeat; pass++) {
      for await (const conv of conversationsOf(o, p)) {
        report.samples_in++;
        const enc = encoder.encode(conv);
        if ('drop' in enc) countDrop(report, enc.drop);
        else rows.add(enc);
        progress();
      }
    }
    rows.finish();
  } else {
    for (let pass = 0; pass < repeat; pass++) {
      let taken = 0;
      for await (const { item } of mixedTexts(p.sources, p.mix)) {
        if (taken >= limit) break;
        taken++;
        report.samples_in++;
        progress();
        // WikiText's `= Title =` lines are headings, not prose (MindFormers drops them).
        if (o.datasetType === 'wiki' && item.text.trim().startsWith('=')) {
          countDrop(report, 'wiki heading');
          continue;
        }
        const ids = tok.encode(item.text, { addBos: true, addEos: true, parseSpecial: false });
        if (packing) rows.add({ ids, labels: ids });
        else {
          chunker.add(ids);
          chunkedTokens += ids.length;
        }
      }
    }
    if (packing) rows.finish();
    else chunker.finish();
  }
  if (report.rows_out === 0) throw noRowsError(o, p.input, report, rows, chunkedTokens);
}

export async function preprocess(o: PreprocessOptions): Promise<PreprocessResult> {
  const tok = o.tokenizer;
  if (o.force === true && existsSync(o.outputDir) && readdirSync(o.outputDir).length > 0 && !existsSync(join(o.outputDir, 'manifest.json'))) {
    throw new ConfigError(`${o.outputDir} holds something other than token records (no manifest.json): --force replaces only token records`, { where: o.outputDir, hint: 'choose another --output_file' });
  }
  const p = await prepare(o);
  return writeDirAtomically(o.outputDir, async (tmp) => {
    const writer = new RecordsWriter(tmp, { seqLength: o.seqLength, segments: p.packing });
    try {
      await produceRows(o, p, writer);
      const manifest = writer.finish(
        {
          seq_length: o.seqLength,
          dataset_type: o.datasetType,
          template: p.template,
          prompt_format: p.promptFormat,
          packed: p.packing,
          pad_id: p.padId,
          ignore_id: -100,
          tokenizer: { identity: tok.identity, kind: tok.kind, vocab_size: tok.vocabSize, bos_id: tok.bosId, eos_id: tok.eosId },
        },
        p.report,
      );
      return { manifest, report: p.report };
    } catch (err) {
      writer.abort();
      throw err;
    }
  }, { overwrite: o.force === true, flag: '--output_file' });
}

/**
 * `data preprocess --output_format mindrecord`: the same rows as a MindRecord file (and its .db) at outputDir,
 * with llama_preprocess.py's schema: input_ids and labels for qa, input_ids alone for text (labels equal ids).
 * Packed rows need segment ids, which that schema has no field for.
 */
export async function preprocessToMindRecord(o: PreprocessOptions & { headerSize?: number; pageSize?: number }): Promise<{ report: PreprocessReport; rows: number }> {
  if (o.packing === true) throw new ConfigError('--packing needs segment ids, which MindFormers\' MindRecord schema (input_ids, labels) has no field for', { where: '--packing', hint: 'write token records (the default --output_format) to pack' });
  const p = await prepare(o);
  const writer = new MindRecordWriter(o.outputDir, {
    seqLength: o.seqLength,
    labels: o.datasetType === 'qa',
    desc: o.datasetType,
    overwrite: o.force === true,
    ...(o.headerSize !== undefined ? { headerSize: o.headerSize } : {}),
    ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}),
  });
  try {
    await produceRows(o, p, writer);
    writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
  return { report: p.report, rows: writer.rowCount };
}
