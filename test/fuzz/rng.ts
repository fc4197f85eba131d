// The fuzzer's seeded PRNG: every case is a pure function of (target, seed, case number), so any failing
// case can be replayed alone with `--target T --seed S --case N`.

export type Rng = () => number;

/** mulberry32: small, fast and good enough to pick mutations. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of case `index` of `target` in a campaign seeded with `seed` (FNV-1a over the three). */
export function caseSeed(target: string, seed: number, index: number): number {
  let h = 0x811c9dc5;
  for (const ch of `${target}/${seed}/${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

export function int(r: Rng, n: number): number {
  return Math.floor(r() * n);
}

export function pick<T>(r: Rng, xs: readonly T[]): T {
  return xs[int(r, xs.length)] as T;
}
