// A per-kernel profile of the addon: while enabled, every export of the binding is timed (calls and
// wall time), so a training step can be broken down by op (`sftkit run --profile`, bench/train --profile).
import { native } from './binding.ts';

export interface ProfileRow {
  name: string;
  calls: number;
  seconds: number;
}

type Fn = (...args: unknown[]) => unknown;

let originals: Map<string, Fn> | null = null;
const totals = new Map<string, { calls: number; ns: bigint }>();

/** Starts timing every native call (idempotent). Costs ~100 ns per call while on. */
export function startProfile(): void {
  if (originals) return;
  originals = new Map();
  const target = native as unknown as Record<string, unknown>;
  for (const [name, value] of Object.entries(target)) {
    if (typeof value !== 'function') continue;
    const fn = value as Fn;
    originals.set(name, fn);
    target[name] = (...args: unknown[]): unknown => {
      const t0 = process.hrtime.bigint();
      try {
        return fn(...args);
      } finally {
        const row = totals.get(name) ?? { calls: 0, ns: 0n };
        row.calls += 1;
        row.ns += process.hrtime.bigint() - t0;
        totals.set(name, row);
      }
    };
  }
}

/** Stops timing and restores the plain binding. */
export function stopProfile(): void {
  if (!originals) return;
  const target = native as unknown as Record<string, unknown>;
  for (const [name, fn] of originals) target[name] = fn;
  originals = null;
}

export function resetProfile(): void {
  totals.clear();
}

/** Rows by total time, largest first. */
export function profileRows(): ProfileRow[] {
  return [...totals.entries()]
    .map(([name, r]) => ({ name, calls: r.calls, seconds: Number(r.ns) / 1e9 }))
    .sort((a, b) => b.seconds - a.seconds);
}

/** A plain-text table of the profile, with each kernel's share of the total native time. */
export function formatProfile(rows: readonly ProfileRow[], steps = 1): string {
  const total = rows.reduce((s, r) => s + r.seconds, 0);
  const lines = ['kernel                 calls/step   ms/step   share'];
  for (const r of rows) {
    if (r.seconds === 0) continue;
    lines.push(
      `${r.name.padEnd(22)} ${(r.calls / steps).toFixed(1).padStart(10)} ${((1000 * r.seconds) / steps).toFixed(2).padStart(9)} ${((100 * r.seconds) / Math.max(total, 1e-12)).toFixed(1).padStart(6)}%`,
    );
  }
  lines.push(`${'total native'.padEnd(22)} ${''.padStart(10)} ${((1000 * total) / steps).toFixed(2).padStart(9)}`);
  return lines.join('\n');
}
