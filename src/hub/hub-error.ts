// The hub's typed error: a failed request, a refused repo or file, a download that could not complete.
import { SftkitError, type ErrorDetails } from '../errors.ts';

export interface HubErrorDetails extends ErrorDetails {
  /** HTTP status of the response that failed, when there was one. */
  status?: number;
}

/** Talking to the Hugging Face hub (or reading its cache) failed; `where` names the repo or file. */
export class HubError extends SftkitError {
  readonly status: number | undefined;
  constructor(message: string, details: HubErrorDetails = {}) {
    super(message, details);
    this.status = details.status;
  }
}

/** The hub could not be reached at all (refused, DNS, reset before any answer): a cached copy may stand in. */
export class HubNetworkError extends HubError {}
