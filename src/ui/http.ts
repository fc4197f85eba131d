// Small helpers of the dashboard's HTTP server: an error carrying its status, JSON bodies in and out, and the
// mapping of sftkit's typed errors onto 4xx answers (a bad path or a bad config is the client's fault).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, DataError, FileError, FormatError, SftkitError } from '../errors.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly where?: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Bodies larger than this are refused: the API takes small JSON documents only. */
const MAX_BODY = 1 << 20;

export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  // A JSON content type cannot be sent by a plain HTML form of another site without a CORS preflight.
  if (!/^application\/json\b/i.test(type)) throw new HttpError(415, 'send the body as application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `the body is not JSON (${(err as Error).message})`);
  }
  // The API's documents are a few levels deep; a deeply nested one would only exhaust the stack of whatever
  // walks it next (schema validation, cloning).
  if (nesting(value) > MAX_DEPTH) throw new HttpError(400, `the body nests deeper than ${MAX_DEPTH} levels`);
  return value;
}

/** Deeper documents, from a request or from a file, are refused: answering them would overflow JSON.stringify. */
export const MAX_DEPTH = 32;

/** How deeply arrays and objects nest in a parsed JSON value (iterative: the check itself must not recurse). */
export function nesting(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== 'object' || v === null) continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_DEPTH) return deepest;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The status and message a thrown error becomes. */
export function errorAnswer(err: unknown): { status: number; body: { error: { message: string; where?: string; hint?: string } } } {
  if (err instanceof HttpError) return { status: err.status, body: { error: { message: err.message, ...(err.where ? { where: err.where } : {}) } } };
  if (err instanceof SftkitError) {
    const status = err instanceof ConfigError || err instanceof DataError || err instanceof FormatError || err instanceof FileError ? 400 : 500;
    return { status, body: { error: { message: err.message, ...(err.where ? { where: err.where } : {}), ...(err.hint ? { hint: err.hint } : {}) } } };
  }
  return { status: 500, body: { error: { message: (err as Error)?.message ?? String(err) } } };
}

/** A query parameter that must be present. */
export function param(url: URL, name: string): string {
  const v = url.searchParams.get(name);
  if (v === null) throw new HttpError(400, `missing query parameter '${name}'`);
  return v;
}

/** An optional non-negative integer query parameter. */
export function intParam(url: URL, name: string, fallback: number): number {
  const v = url.searchParams.get(name);
  if (v === null || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new HttpError(400, `query parameter '${name}' must be a non-negative integer (got ${JSON.stringify(v)})`);
  return n;
}
