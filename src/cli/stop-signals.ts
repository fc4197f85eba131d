// Graceful stop on SIGINT, SIGTERM and SIGUSR1 (Ctrl-C; a scheduler's preemption notice such as Kubernetes'
// SIGTERM or Slurm's --signal=USR1@T): training finishes its step, saves a checkpoint and the process exits
// with 128 + the signal's number. A second SIGINT or SIGTERM, or the time limit, ends it at once.
import { constants } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ConfigError } from '../errors.ts';

export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGUSR1'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** Default seconds from the first stop signal to a forced exit (SFTKIT_STOP_TIMEOUT overrides). */
export const DEFAULT_STOP_TIMEOUT_S = 300;

/** The exit code of a run that stopped on `signal` after saving: 128 + its number, as a shell reports it. */
export function stopExitCode(signal: StopSignal): number {
  return 128 + constants.signals[signal];
}

/** The stop signal whose graceful exit code is `code`, or null. */
export function stopSignalOfExitCode(code: number): StopSignal | null {
  return STOP_SIGNALS.find((s) => stopExitCode(s) === code) ?? null;
}

/** SFTKIT_STOP_TIMEOUT in seconds (a positive number), or the default. */
export function stopTimeoutSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SFTKIT_STOP_TIMEOUT;
  if (raw === undefined || raw === '') return DEFAULT_STOP_TIMEOUT_S;
  const s = Number(raw);
  if (!(s > 0) || !Number.isFinite(s)) throw new ConfigError(`SFTKIT_STOP_TIMEOUT must be a positive number of seconds, got ${JSON.stringify(raw)}`, { where: 'SFTKIT_STOP_TIMEOUT' });
  return s;
}

// The time limit must hold while the main thread is busy in a long step or save, when no timer of its
// own can run: a worker thread writes the message straight to fd 2 and kills the process.
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
setTimeout(() => {
  writeSync(2, workerData.message);
  process.kill(process.pid, 'SIGKILL');
}, workerData.ms);
`;

export interface StopWatchOptions {
  /** Called once, on the first stop signal. */
  onStop(signal: StopSignal): void;
  /** Prints a line for the user. */
  print(line: string): void;
  /** Seconds from the first signal to a forced exit. */
  timeoutSeconds: number;
}

/**
 * Installs the stop handlers until dispose(). The first signal calls onStop and starts the time limit; from
 * then on SIGINT and SIGTERM have their default action again (so a second one ends the process at once, even
 * in the middle of a step), and SIGUSR1 stays caught (Node would otherwise open its inspector on it).
 */
export class StopWatch {
  private received: StopSignal | null = null;
  private disposed = false;
  private watchdog: Worker | null = null;
  private readonly handlers = new Map<StopSignal, () => void>();
  private readonly opts: StopWatchOptions;

  constructor(opts: StopWatchOptions) {
    this.opts = opts;
    for (const sig of STOP_SIGNALS) {
      const handler = (): void => this.receive(sig);
      this.handlers.set(sig, handler);
      process.on(sig, handler);
    }
  }

  /** The first stop signal received, or null. */
  get signal(): StopSignal | null {
    return this.received;
  }

  private receive(sig: StopSignal): void {
    if (this.disposed) return;
    if (this.received !== null) {
      this.opts.print(`received ${sig} again: already stopping (SIGINT or SIGTERM ends the process at once)`);
      return;
    }
    this.received = sig;
    for (const s of ['SIGINT', 'SIGTERM'] as const) this.release(s);
    const seconds = this.opts.timeoutSeconds;
    this.opts.print(`received ${sig}: finishing the step, saving a checkpoint and exiting within ${seconds} s (SIGINT or SIGTERM again exits at once)`);
    const message = `sftkit: no checkpoint within ${seconds} s of ${sig} (SFTKIT_STOP_TIMEOUT); killing this process. The previous checkpoint is kept.\n`;
    this.watchdog = new Worker(WATCHDOG, { eval: true, workerData: { ms: seconds * 1000, message } });
    // The watchdog never keeps the process alive: a run that finishes its save in time exits as usual.
    this.watchdog.unref();
    this.opts.onStop(sig);
  }

  private release(sig: StopSignal): void {
    const handler = this.handlers.get(sig);
    if (handler) process.removeListener(sig, handler);
    this.handlers.delete(sig);
  }

  /** Removes the handlers and the time limit (SIGUSR1 stays caught: Node's inspector must not open late in a run). */
  dispose(): void {
    this.disposed = true;
    for (const sig of ['SIGINT', 'SIGTERM'] as const) this.release(sig);
    void this.watchdog?.terminate();
    this.watchdog = null;
  }
}
