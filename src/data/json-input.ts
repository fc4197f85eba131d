// Reads a data file that is either one JSON array or JSON Lines, keeping where each record came from
// (file:line for JSONL, file[index] for arrays) so every later error can name the sample. The file is read in
// chunks and records are yielded one at a time, so memory stays bounded by the largest record, not the file.
import { closeSync, openSync, readSync } from 'node:fs';
import { DataError } from '../errors.ts';

export interface SourcedRecord {
  value: unknown;
  /** 0-based index of the record in its file. */
  index: number;
  /** Human-readable location: `file:LINE` (JSONL), `file[INDEX]` (JSON array) or `file#ROW` (Parquet). */
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

function invalidJson(file: string, line: number, column: number, reason: string): DataError {
  return new DataError(`${file}:${line}:${column}: invalid JSON: ${reason}`, {
    where: `${file}:${line}:${column}`,
    hint: 'the file must be one JSON array or JSON Lines (one JSON value per line)',
  });
}

/**
 * Parses JSON, turning V8's "at position N" into `file:line:column: message`. `text` starts at line `baseLine`,
 * column `baseColumn` of the file.
 */
export function parseJsonAt(text: string, file: string, baseLine = 1, baseColumn = 1): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const pos = /at position (\d+)/.exec(message);
    // Without a position (V8 gives none for some errors), point just past the value's text.
    const offset = pos ? Number(pos[1]) : text.trimEnd().length;
    const { line, column } = lineColumn(text, offset);
    const reason = message.replace(/ in JSON at position \d+.*$/, '').replace(/ \(line \d+ column \d+\)$/, '');
    throw invalidJson(file, line + baseLine - 1, line === 1 ? column + baseColumn - 1 : column, reason);
  }
}

const OPEN_BRACKET = 0x5b, CLOSE_BRACKET = 0x5d, OPEN_BRACE = 0x7b, CLOSE_BRACE = 0x7d;
const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, NEWLINE = 0x0a;
const isSpace = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/** Chunks of a file, read in order (the last one may be shorter). */
function* chunks(file: string, chunkBytes: number): Generator<Uint8Array> {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new DataError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { where: file });
  }
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, chunkBytes, null);
      } catch (err) {
        throw new DataError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { where: file });
      }
      if (n === 0) return;
      // A copy: the caller may keep slices while the next chunk is read into `buf`.
      yield Uint8Array.prototype.slice.call(buf, 0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** Bytes collected across chunks (the current JSONL line or array element). */
class Pieces {
  private parts: Uint8Array[] = [];
  size = 0;
  add(part: Uint8Array): void {
    if (part.length === 0) return;
    this.parts.push(part);
    this.size += part.length;
  }
  take(): string {
    const text = this.parts.length === 1 ? Buffer.from(this.parts[0]!.buffer, this.parts[0]!.byteOffset, this.parts[0]!.length).toString('utf8') : Buffer.concat(this.parts).toString('utf8');
    this.parts = [];
    this.size = 0;
    return text;
  }
}

export interface StreamOptions {
  /** Bytes read per system call (default 1 MiB; the fuzz target uses tiny ones to cut records anywhere). */
  chunkBytes?: number;
}

/**
 * Records of a JSON-array or JSONL file, one at a time; the kind is told by the first non-blank character
 * (`[` = array). Invalid JSON is a DataError naming `file:line:column`; a stray byte around the array, a missing
 * `]` or an empty element (`[1,,2]`) too.
 */
export function* streamJsonRecords(file: string, options: StreamOptions = {}): Generator<SourcedRecord> {
  const it = chunks(file, options.chunkBytes ?? 1 << 20);
  try {
    // The first three bytes, to skip a UTF-8 byte-order mark.
    let current: Uint8Array = new Uint8Array(0);
    while (current.length < 3) {
      const next = it.next();
      if (next.done === true) break;
      current = current.length === 0 ? next.value : Buffer.concat([current, next.value]);
    }
    let offset = current[0] === 0xef && current[1] === 0xbb && current[2] === 0xbf ? 3 : 0;
    // The first non-blank byte tells the kind; count the lines and columns of the blanks before it.
    let line = 1, column = 1;
    for (;;) {
      while (offset < current.length && isSpace(current[offset]!)) {
        if (current[offset] === NEWLINE) {
          line++;
          column = 1;
        } else column++;
        offset++;
      }
      if (offset < current.length) break;
      const next = it.next();
      if (next.done === true) return;
      current = next.value;
      offset = 0;
    }
    const rest = (function* (): Generator<Uint8Array> {
      yield current.subarray(offset);
      for (let next = it.next(); next.done !== true; next = it.next()) yield next.value;
    })();
    if (current[offset] === OPEN_BRACKET) yield* arrayRecords(file, rest, line, column);
    else yield* jsonlRecords(file, rest, line);
  } finally {
    it.return(undefined);
  }
}

function* jsonlRecords(file: string, source: Iterable<Uint8Array>, startLine: number): Generator<SourcedRecord> {
  const current = new Pieces();
  let lineNo = startLine;
  let index = 0;
  const emit = (text: string): SourcedRecord | null => {
    if (text.trim() === '') return null;
    return { value: parseJsonAt(text, file, lineNo), index: index++, where: `${file}:${lineNo}` };
  };
  for (const chunk of source) {
    let from = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, from)) {
      current.add(chunk.subarray(from, nl));
      const rec = emit(current.take());
      if (rec !== null) yield rec;
      lineNo++;
      from = nl + 1;
    }
    current.add(chunk.subarray(from));
  }
  const rec = emit(current.take());
  if (rec !== null) yield rec;
}

/**
 * Elements of a JSON array, cut at the commas and the closing bracket of depth 1 (outside strings) and parsed one
 * by one. The cut does not check the brackets inside an element: JSON.parse of the element does.
 */
function* arrayRecords(file: string, source: Iterable<Uint8Array>, startLine: number, startColumn: number): Generator<SourcedRecord> {
  const element = new Pieces();
  let depth = 0; // 0 before the opening bracket, 1 between elements, more inside one
  let inString = false;
  let escaped = false;
  let closed = false;
  let index = 0;
  let line = startLine, column = startColumn;
  // Where the current element's text starts (just after the previous separator).
  let elemLine = line, elemColumn = column + 1;
  const finishElement = (last: boolean): SourcedRecord | null => {
    const text = element.take();
    if (text.trim() === '') {
      if (last && index === 0) return null; // `[]`
      throw invalidJson(file, line, column, last ? 'unexpected "]" (a trailing comma?)' : 'unexpected "," (an empty element)');
    }
    const rec = { value: parseJsonAt(text, file, elemLine, elemColumn), index, where: `${file}[${index}]` };
    index++;
    return rec;
  };
  for (const chunk of source) {
    let from = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (closed) {
        if (!isSpace(b)) throw invalidJson(file, line, column, 'unexpected text after the closing "]" of the array');
      } else if (inString) {
        if (escaped) escaped = false;
        else if (b === BACKSLASH) escaped = true;
        else if (b === QUOTE) inString = false;
      } else if (b === QUOTE) inString = true;
      else if (depth === 0) {
        // The opening bracket (the caller checked that it comes first).
        depth = 1;
        from = i + 1;
        elemLine = line;
        elemColumn = column + 1;
      } else if (b === OPEN_BRACKET || b === OPEN_BRACE) depth++;
      else if ((b === CLOSE_BRACKET || b === CLOSE_BRACE) && depth > 1) depth--;
      else if (depth === 1 && (b === COMMA || b === CLOSE_BRACKET)) {
        element.add(chunk.subarray(from, i));
        const rec = finishElement(b === CLOSE_BRACKET);
        if (rec !== null) yield rec;
        if (b === CLOSE_BRACKET) closed = true;
        from = i + 1;
        elemLine = line;
        elemColumn = column + 1;
      }
      if (b === NEWLINE) {
        line++;
        column = 1;
      } else if ((b & 0xc0) !== 0x80) column++; // count characters, not UTF-8 continuation bytes
    }
    if (!closed) element.add(chunk.subarray(from));
  }
  if (!closed) throw invalidJson(file, line, column, 'unexpected end of the file (the array has no closing "]")');
}

/** Records of a JSON-array or JSONL file, all in memory (for small inputs such as alpaca conversion). */
export function readJsonRecords(file: string): SourcedRecord[] {
  return [...streamJsonRecords(file)];
}

/** Lines of a text file (split on `\n`, a `\r` kept), decoded as UTF-8 one at a time. */
export function* streamLines(file: string, options: StreamOptions = {}): Generator<string> {
  const current = new Pieces();
  for (const chunk of chunks(file, options.chunkBytes ?? 1 << 20)) {
    let from = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, from)) {
      current.add(chunk.subarray(from, nl));
      yield current.take();
      from = nl + 1;
    }
    current.add(chunk.subarray(from));
  }
  yield current.take();
}
