// Runs seeded fuzz cases against a target and sorts each outcome: ok, a typed sftkit error naming the file,
// a typed error naming no file, a crash (anything else), a hang (over 2 s of CPU) or a blow-up (peak RSS grown
// past what the input justifies).
import { SftkitError } from '../../src/errors.ts';
import { caseSeed, rng, type Rng } from './rng.ts';

/** One mutated input: the file it replaces (relative name, as errors must name it) and its bytes. */
export interface FuzzInput {
  file: string;
  bytes: Uint8Array;
}

export interface PreparedTarget {
  /** Makes one mutated input from the seed files. */
  generate(r: Rng): FuzzInput;
  /** Feeds the input to the parser the way sftkit's loaders do, reading everything it offers; throws on error. */
  exercise(input: FuzzInput): void;
  /** Removes temp files. */
  dispose(): void;
}

export interface Target {
  name: string;
  /** What is parsed, for the report. */
  description: string;
  prepare(): PreparedTarget;
}

export type Outcome = 'ok' | 'typed' | 'unnamed' | 'crash' | 'hang' | 'blowup';
export const OUTCOMES: readonly Outcome[] = ['ok', 'typed', 'unnamed', 'crash', 'hang', 'blowup'];

export const HANG_MS = 2000;
/** Peak RSS may grow by this much plus 64x the input during one case before it counts as a blow-up. */
export const BLOWUP_BYTES = 256 * 1024 * 1024;

export interface CaseResult {
  index: number;
  outcome: Outcome;
  ms: number;
  file: string;
  detail: string;
}

export interface TargetReport {
  target: string;
  cases: number;
  counts: Record<Outcome, number>;
  seconds: number;
  /** The first few bad cases, for replay. */
  failures: CaseResult[];
}

function baseName(file: string): string {
  return file.slice(file.lastIndexOf('/') + 1);
}

function classify(err: unknown, file: string): { outcome: Outcome; detail: string } {
  if (err instanceof SftkitError) {
    const named = err.message.includes(baseName(file)) || (err.where ?? '').includes(baseName(file));
    return { outcome: named ? 'typed' : 'unnamed', detail: `${err.name}: ${err.message.slice(0, 300)}` };
  }
  const e = err as Error | undefined;
  return { outcome: 'crash', detail: (e?.stack ?? String(err)).split('\n').slice(0, 6).join('\n') };
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export function runCase(t: PreparedTarget, at: { name: string; seed: number; index: number }): CaseResult {
  const { index } = at;
  const input = t.generate(rng(caseSeed(at.name, at.seed, index)));
  const before = peakRss();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let result: { outcome: Outcome; detail: string } = { outcome: 'ok', detail: '' };
  // Libraries warn on the console about what they skip (the tokenizers library: "Unknown pattern type");
  // a hundred thousand cases of that would drown the report.
  const warn = console.warn;
  console.warn = () => {};
  try {
    t.exercise(input);
  } catch (err) {
    result = classify(err, input.file);
  } finally {
    console.warn = warn;
  }
  const ms = performance.now() - t0;
  // CPU time, not wall time, decides a hang: on a loaded machine (CI, shared runners) a case waits for a core.
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const grown = peakRss() - before;
  if (grown > BLOWUP_BYTES + 64 * input.bytes.byteLength) result = { outcome: 'blowup', detail: `peak RSS grew ${(grown / 2 ** 20).toFixed(0)} MiB on a ${input.bytes.byteLength}-byte input; ${result.detail}` };
  else if (cpuMs > HANG_MS) result = { outcome: 'hang', detail: `${cpuMs.toFixed(0)} ms of CPU (${ms.toFixed(0)} ms wall); ${result.detail}` };
  return { index, outcome: result.outcome, ms, file: input.file, detail: result.detail };
}

export function runTarget(target: Target, opts: { cases: number; seed: number; first?: number; onCase?: (r: CaseResult) => void }): TargetReport {
  const prepared = target.prepare();
  const counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  const failures: CaseResult[] = [];
  const t0 = performance.now();
  try {
    const first = opts.first ?? 0;
    for (let i = first; i < first + opts.cases; i++) {
      const r = runCase(prepared, { name: target.name, seed: opts.seed, index: i });
      counts[r.outcome]++;
      if (r.outcome !== 'ok' && r.outcome !== 'typed' && failures.length < 20) failures.push(r);
      opts.onCase?.(r);
    }
  } finally {
    prepared.dispose();
  }
  return { target: target.name, cases: opts.cases, counts, seconds: (performance.now() - t0) / 1000, failures };
}
