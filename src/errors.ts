// sftkit's typed errors: one class per domain, each carrying where the problem is and a hint.
export interface ErrorDetails {
  /** What to do about it. */
  hint?: string;
  /** File, tensor, field or op the error is about. */
  where?: string;
}

export class SftkitError extends Error {
  readonly hint: string | undefined;
  readonly where: string | undefined;
  constructor(message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = new.target.name;
    this.hint = details.hint;
    this.where = details.where;
  }
}

/** A tensor op got shapes, dtypes or values it cannot take. */
export class ShapeError extends SftkitError {}
/** A file is malformed or of an unsupported kind. */
export class FormatError extends SftkitError {}
/** A configuration value is invalid. */
export class ConfigError extends SftkitError {}
/** Training or evaluation data is invalid. */
export class DataError extends SftkitError {}
/** A file or folder cannot be read or written (disk full, read-only, no permission): names it and says why. */
export class FileError extends SftkitError {}
