// `sftkit data preprocess`: conversations (qa) or raw text (wiki, text) into token records, with a report.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeDirAtomically } from '../formats/checkpoint-dir.ts';
import { MindRecordWriter } from '../formats/mindrecord.ts';
import { ConfigError, DataError } from '../errors.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { ALPACA_PROMPT_INPUT_HEAD, ALPACA_PROMPT_NO_INPUT_HEAD } from './alpaca.ts';
import { parseConversation, type Conversation } from './conversation.ts';
import { expandGlob } from './glob.ts';
import { HfTemplateEncoder } from './hf-template.ts';
import { readJsonRecords } from './json-input.ts';
import { PartEncoder, type ChatEncoder } from './qa-tokenize.ts';
import { RecordsWriter, type RecordsManifest } from './records.ts';
import { countDrop, emptyReport, type PreprocessReport } from './report.ts';
import { RowAssembler, StreamChunker, type RowSink, type Truncation } from './rows.ts';
import { checkTemplateName, PART_TEMPLATES, type TemplateName } from './templates.ts';

export type DatasetType = 'qa' | 'wiki' | 'text';

export interface PreprocessOptions {
  datasetType: DatasetType;
  inputGlob: string;
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
}

function prepare(o: PreprocessOptions): Prepared {
  checkOptions(o);
  return { template: o.datasetType === 'qa' ? (o.template ?? 'vicuna') : null, padId: padIdOf(o.tokenizer), packing: o.packing === true, report: emptyReport() };
}

/** Tokenizes the input into rows pushed to `sink`, counting everything in the report; returns the prompt format. */
function produceRows(o: PreprocessOptions, p: Prepared, sink: RowSink): 'alpaca' | null {
  const tok = o.tokenizer;
  const files = expandGlob(o.inputGlob);
  const { template, padId, packing, report } = p;
  const encoder = template === null ? null : chatEncoder(tok, template);
  const repeat = o.repeat ?? 1;
  const limit = o.samplesNum ?? Infinity;
  const progress = (): void => {
    if (o.onProgress !== undefined && report.samples_in % 1000 === 0) o.onProgress(report.samples_in);
  };
  let promptFormat: 'alpaca' | null = null;
  const rowOpts = { rowLength: o.seqLength + 1, padId, packing, truncation: o.truncation ?? 'right', maskSegmentStart: template === null };
  const rows = new RowAssembler(rowOpts, sink, report);
  const chunker = new StreamChunker(o.seqLength + 1, sink, report);
  if (encoder !== null) {
    // Parse and validate everything first: a bad sample stops the run before any work is wasted.
    const convs = [];
    for (const f of files) {
      for (const rec of readJsonRecords(f)) {
        if (convs.length >= limit) break;
        convs.push(parseConversation(rec));
      }
    }
    promptFormat = convs.length > 0 && convs.every(isAlpacaPrompted) ? 'alpaca' : null;
    for (let pass = 0; pass < repeat; pass++) {
      for (const conv of convs) {
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
      for (const f of files) {
        let text: string;
        try {
          text = readFileSync(f, 'utf8');
        } catch (err) {
          throw new DataError(`${f}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { where: f });
        }
        for (const para of paragraphs(text)) {
          if (taken >= limit) break;
          taken++;
          report.samples_in++;
          progress();
          // WikiText's `= Title =` lines are headings, not prose (MindFormers drops them).
          if (o.datasetType === 'wiki' && para.trim().startsWith('=')) {
            countDrop(report, 'wiki heading');
            continue;
          }
          const ids = tok.encode(para, { addBos: true, addEos: true, parseSpecial: false });
          if (packing) rows.add({ ids, labels: ids });
          else chunker.add(ids);
        }
      }
    }
    if (packing) rows.finish();
    else chunker.finish();
  }
  if (report.rows_out === 0) {
    throw new DataError(`${o.inputGlob}: no rows to write (${report.samples_in} samples in, ${report.dropped.count} dropped, ${report.tail_tokens_dropped} tail tokens)`, {
      where: o.inputGlob,
      hint: 'check the input, --seq_length and --truncation',
    });
  }
  return promptFormat;
}

export async function preprocess(o: PreprocessOptions): Promise<PreprocessResult> {
  const p = prepare(o);
  const tok = o.tokenizer;
  if (o.force === true && existsSync(o.outputDir) && readdirSync(o.outputDir).length > 0 && !existsSync(join(o.outputDir, 'manifest.json'))) {
    throw new ConfigError(`${o.outputDir} holds something other than token records (no manifest.json): --force replaces only token records`, { where: o.outputDir, hint: 'choose another --output_file' });
  }
  return writeDirAtomically(o.outputDir, (tmp) => {
    const writer = new RecordsWriter(tmp, { seqLength: o.seqLength, segments: p.packing });
    try {
      const promptFormat = produceRows(o, p, writer);
      const manifest = writer.finish(
        {
          seq_length: o.seqLength,
          dataset_type: o.datasetType,
          template: p.template,
          prompt_format: promptFormat,
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
  const p = prepare(o);
  if (p.packing) throw new ConfigError('--packing needs segment ids, which MindFormers\' MindRecord schema (input_ids, labels) has no field for', { where: '--packing', hint: 'write token records (the default --output_format) to pack' });
  const writer = new MindRecordWriter(o.outputDir, {
    seqLength: o.seqLength,
    labels: o.datasetType === 'qa',
    desc: o.datasetType,
    overwrite: o.force === true,
    ...(o.headerSize !== undefined ? { headerSize: o.headerSize } : {}),
    ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}),
  });
  try {
    produceRows(o, p, writer);
    writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
  return { report: p.report, rows: writer.rowCount };
}
