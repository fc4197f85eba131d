// Parses shard sizes the way transformers' `max_shard_size` does: "5GB" = 5e9 bytes, "2GiB" = 2 * 2^30, or a byte count.
import { ConfigError } from '../errors.ts';

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

export function parseShardSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = UNITS[(m?.[2] || 'B').toUpperCase()];
  const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new ConfigError(`--max_shard_size ${JSON.stringify(text)} is not a size (e.g. 5GB, 500MB, 2GiB)`, { where: '--max_shard_size' });
  }
  return bytes;
}
