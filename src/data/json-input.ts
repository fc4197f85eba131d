// Reads a data file that is either one JSON array or JSON Lines, keeping where each record came from
// (file:line for JSONL, file[index] for arrays) so every later error can name the sample.
import { readFileSync } from 'node:fs';
import { DataError } from '../errors.ts';

export interface SourcedRecord {
  value: unknown;
  /** 0-based index of the record in its file. */
  index: number;
  /** Human-readable location: `file:LINE` (JSONL) or `file[INDEX]` (JSON array). */
  where: string;
}

/** 1-based line and column of a character offset in `text`. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

/** Parses JSON, turning V8's "at position N" into `file:line:column: message`. */
export function parseJsonAt(text: string, file: string, baseLine = 1): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const pos = /at position (\d+)/.exec(message);
    const offset = pos ? Number(pos[1]) : text.length;
    const { line, column } = lineColumn(text, offset);
    const reason = message.replace(/ in JSON at position \d+.*$/, '').replace(/ \(line \d+ column \d+\)$/, '');
    throw new DataError(`${file}:${line + baseLine - 1}:${column}: invalid JSON: ${reason}`, {
      where: `${file}:${line + baseLine - 1}:${column}`,
      hint: 'the file must be one JSON array or JSON Lines (one JSON value per line)',
    });
  }
}

/** Records of a JSON-array or JSONL file; the kind is told by the first non-blank character (`[` = array). */
export function readJsonRecords(file: string): SourcedRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DataError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { where: file });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const first = /\S/.exec(text);
  if (first === null) return [];
  if (first[0] === '[') {
    const value = parseJsonAt(text, file);
    if (!Array.isArray(value)) throw new DataError(`${file}: expected a JSON array`, { where: file });
    return value.map((v, index) => ({ value: v, index, where: `${file}[${index}]` }));
  }
  const out: SourcedRecord[] = [];
  let lineNo = 0;
  let from = 0;
  while (from <= text.length) {
    let nl = text.indexOf('\n', from);
    if (nl < 0) nl = text.length;
    lineNo++;
    const line = text.slice(from, nl);
    if (line.trim() !== '') {
      out.push({ value: parseJsonAt(line, file, lineNo), index: out.length, where: `${file}:${lineNo}` });
    }
    from = nl + 1;
  }
  return out;
}
