// Small numeric helpers every bench shares: medians, ratios and their formatting.

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Geometric mean of positive ratios. */
export function geomean(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('geometric mean of an empty list');
  return Math.exp(xs.reduce((a, r) => a + Math.log(r), 0) / xs.length);
}

/** "1.23×"; "n/a" when the ratio is not a finite number (a side failed or measured zero). */
export function formatRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : 'n/a';
}

/** A rate or size with sensible precision: 12345 → "12345", 123.4 → "123.4", 1.234 → "1.23". */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  return x.toFixed(2);
}
