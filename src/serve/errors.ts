// The server's errors: each carries the HTTP status and the fields of an OpenAI error body
// ({"error": {"message", "type", "param", "code"}}), so a bad request is answered, never a crash.
import { SftkitError } from '../errors.ts';

export type ErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

export interface ApiErrorDetails {
  status: number;
  type: ErrorType;
  /** The request field at fault (`messages[2].content`), as OpenAI reports it. */
  param?: string | null;
  code?: string | null;
  /** Endpoint and field, for logs and `where`. */
  endpoint?: string;
}

/** An error answered as an OpenAI-shaped JSON body with its HTTP status. */
export class RequestError extends SftkitError {
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | null;
  readonly code: string | null;
  constructor(message: string, d: ApiErrorDetails) {
    super(message, { where: [d.endpoint, d.param].filter(Boolean).join(' ') || undefined });
    this.status = d.status;
    this.type = d.type;
    this.param = d.param ?? null;
    this.code = d.code ?? null;
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about one field of the request body. */
export function badField(endpoint: string, param: string, message: string, code: string | null = 'invalid_value'): RequestError {
  return new RequestError(`${param}: ${message}`, { status: 400, type: 'invalid_request_error', param, code, endpoint });
}
