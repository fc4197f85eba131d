// Prints sftkit's typed errors as one clear message (stack only with --debug).
import { SftkitError } from '../errors.ts';

export function printError(err: unknown, debug: boolean): void {
  if (err instanceof SftkitError) {
    console.error(`sftkit: ${err.message}`);
    if (err.hint) console.error(`hint: ${err.hint}`);
  } else if (err instanceof Error) {
    console.error(`sftkit: ${err.message}`);
  } else {
    console.error(`sftkit: ${String(err)}`);
  }
  if (debug && err instanceof Error && err.stack) console.error(err.stack);
}
