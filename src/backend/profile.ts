// A per-kernel profile: while enabled, every method of the active compute backend and every collective is
// timed (calls and wall time) and its memory traffic and FLOPs are estimated from the call's arguments, so a
// training step can be broken down by op (`sftkit run --profile`, bench/train --profile). Off, the backend
// objects are untouched.
import { mpi } from './collectives.ts';
import { kernelCost } from './profile-cost.ts';
import { activeBackend } from './select.ts';

export interface ProfileRow {
  name: string;
  calls: number;
  seconds: number;
  /** Bytes read + written by the calls, from the argument extents (0 where not estimated). */
  bytes: number;
  /** Floating-point operations of the calls (0 where not meaningful). */
  flops: number;
}

type Fn = (...args: unknown[]) => unknown;

/** Each wrapped object with its methods as they were, by profile row name. */
let originals: { target: Record<string, unknown>; fns: Map<string, [string, Fn]> }[] | null = null;
const totals = new Map<string, { calls: number; ns: bigint; bytes: number; flops: number }>();

/** The objects whose methods are timed, and the row name of each method (collectives as mpiAllReduce, ...). */
function targets(): { target: Record<string, unknown>; rowName: (method: string) => string }[] {
  return [
    { target: activeBackend() as unknown as Record<string, unknown>, rowName: (m) => m },
    { target: mpi as unknown as Record<string, unknown>, rowName: (m) => `mpi${m[0]?.toUpperCase() ?? ''}${m.slice(1)}` },
  ];
}

/** Starts timing every backend call (idempotent). Costs ~100 ns per call while on. */
export function startProfile(): void {
  if (originals) return;
  originals = [];
  for (const { target, rowName } of targets()) {
    const fns = new Map<string, [string, Fn]>();
    originals.push({ target, fns });
    for (const [method, value] of Object.entries(target)) {
      if (typeof value !== 'function') continue;
      const fn = value as Fn;
      const name = rowName(method);
      fns.set(method, [name, fn]);
      target[method] = (...args: unknown[]): unknown => {
        const t0 = process.hrtime.bigint();
        try {
          return fn(...args);
        } finally {
          const dt = process.hrtime.bigint() - t0;
          const row = totals.get(name) ?? { calls: 0, ns: 0n, bytes: 0, flops: 0 };
          const cost = kernelCost(name, args);
          row.calls += 1;
          row.ns += dt;
          row.bytes += cost.bytes;
          row.flops += cost.flops;
          totals.set(name, row);
        }
      };
    }
  }
}

/** Stops timing and restores the plain methods. */
export function stopProfile(): void {
  if (!originals) return;
  for (const { target, fns } of originals) for (const [method, [, fn]] of fns) target[method] = fn;
  originals = null;
}

export function resetProfile(): void {
  totals.clear();
}

/** Rows by total time, largest first. */
export function profileRows(): ProfileRow[] {
  return [...totals.entries()]
    .map(([name, r]) => ({ name, calls: r.calls, seconds: Number(r.ns) / 1e9, bytes: r.bytes, flops: r.flops }))
    .sort((a, b) => b.seconds - a.seconds);
}

/**
 * A plain-text table of the profile: per step, each kernel's calls, time, share of the total backend time,
 * traffic (MB read + written, from argument extents) with its effective GB/s, and GFLOP/s where it computes.
 */
export function formatProfile(rows: readonly ProfileRow[], steps = 1): string {
  const total = rows.reduce((s, r) => s + r.seconds, 0);
  const totalBytes = rows.reduce((s, r) => s + r.bytes, 0);
  const totalFlops = rows.reduce((s, r) => s + r.flops, 0);
  const rate = (x: number, s: number): string => (x > 0 && s > 0 ? (x / s / 1e9).toFixed(1) : '');
  const lines = ['kernel                 calls/step   ms/step   share   MB/step     GB/s  GFLOP/s'];
  for (const r of rows) {
    if (r.seconds === 0) continue;
    lines.push(
      `${r.name.padEnd(22)} ${(r.calls / steps).toFixed(1).padStart(10)} ${((1000 * r.seconds) / steps).toFixed(2).padStart(9)} ${((100 * r.seconds) / Math.max(total, 1e-12)).toFixed(1).padStart(6)}%` +
        ` ${(r.bytes > 0 ? (r.bytes / steps / 1e6).toFixed(1) : '').padStart(9)} ${rate(r.bytes, r.seconds).padStart(8)} ${rate(r.flops, r.seconds).padStart(8)}`,
    );
  }
  lines.push(
    `${'total backend'.padEnd(22)} ${''.padStart(10)} ${((1000 * total) / steps).toFixed(2).padStart(9)} ${''.padStart(7)}` +
      ` ${(totalBytes / steps / 1e6).toFixed(1).padStart(9)} ${rate(totalBytes, total).padStart(8)} ${rate(totalFlops, total).padStart(8)}`,
  );
  return lines.join('\n');
}
