// MindFormers' alpaca_converter: Stanford Alpaca {instruction, input, output} records into the two-turn
// conversation schema `[{id, conversations: [{from: "human"}, {from: "gpt"}]}]` that preprocess reads.
import { existsSync } from 'node:fs';
import { ConfigError, DataError } from '../errors.ts';
import { writeFileAtomicSync } from '../formats/write-file.ts';
import { readJsonRecords, type SourcedRecord } from './json-input.ts';

/** The Stanford Alpaca prompt for records with a non-empty `input`. */
export const ALPACA_PROMPT_INPUT_HEAD =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n';
/** The Stanford Alpaca prompt for records without an `input`. */
export const ALPACA_PROMPT_NO_INPUT_HEAD =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n';

export interface ConvertedSample {
  id: string;
  conversations: [{ from: 'human'; value: string }, { from: 'gpt'; value: string }];
}

/** The Alpaca prompt of one record. Values are concatenated, never formatted, so `{x}` or `$&` stay literal. */
export function alpacaPrompt(instruction: string, input: string): string {
  if (input !== '') return `${ALPACA_PROMPT_INPUT_HEAD}### Instruction:\n` + instruction + '\n\n### Input:\n' + input + '\n\n### Response:';
  return `${ALPACA_PROMPT_NO_INPUT_HEAD}### Instruction:\n` + instruction + '\n\n### Response:';
}

function stringField(rec: SourcedRecord, obj: Record<string, unknown>, field: string, optional: boolean): string {
  const v = obj[field];
  if (v === undefined && optional) return '';
  if (typeof v !== 'string') {
    const got = v === undefined ? 'it is missing' : `got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`;
    throw new DataError(`${rec.where}: field "${field}" must be a string (${got})`, { where: `${rec.where}.${field}` });
  }
  return v;
}

/** Converts Alpaca records (already read) into conversations with ids "1", "2", ... */
export function convertAlpacaRecords(records: readonly SourcedRecord[]): ConvertedSample[] {
  return records.map((rec, i) => {
    const obj = rec.value;
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      throw new DataError(`${rec.where}: expected an object with "instruction", "input", "output"`, { where: rec.where });
    }
    const o = obj as Record<string, unknown>;
    const instruction = stringField(rec, o, 'instruction', false);
    const input = stringField(rec, o, 'input', true);
    const output = stringField(rec, o, 'output', false);
    return {
      id: String(i + 1),
      conversations: [
        { from: 'human', value: alpacaPrompt(instruction, input) },
        { from: 'gpt', value: output },
      ],
    };
  });
}

/**
 * Writes `text` to `path` through a temp file and a rename; refuses an existing `path` unless `force`. Every byte
 * count is checked: a full disk is a FileError naming `path`, and no truncated file is left behind.
 */
export function writeFileAtomically(path: string, text: string, force: boolean): void {
  if (existsSync(path) && !force) {
    throw new ConfigError(`${path} already exists`, { where: path, hint: 'pass --force to overwrite it, or choose another --output_path' });
  }
  writeFileAtomicSync(path, text);
}

export interface AlpacaConvertResult {
  samples: number;
  withInput: number;
}

/** `sftkit data alpaca`: JSON array or JSONL in, MindFormers' converted JSON (indent 2, UTF-8 as is) out. */
export function convertAlpacaFile(dataPath: string, outputPath: string, opts: { force?: boolean } = {}): AlpacaConvertResult {
  if (existsSync(outputPath) && opts.force !== true) {
    throw new ConfigError(`${outputPath} already exists`, { where: outputPath, hint: 'pass --force to overwrite it, or choose another --output_path' });
  }
  const records = readJsonRecords(dataPath);
  const converted = convertAlpacaRecords(records);
  const withInput = converted.filter((c) => c.conversations[0].value.startsWith(ALPACA_PROMPT_INPUT_HEAD)).length;
  // Python's json.dump(..., ensure_ascii=False, indent=2) and JSON.stringify(..., null, 2) give the same text.
  writeFileAtomically(outputPath, JSON.stringify(converted, null, 2), opts.force === true);
  return { samples: converted.length, withInput };
}
