// `freeze: {include, exclude}` of the run config: which weights a run keeps frozen (no gradient, no
// optimizer state), by regular expressions over HF weight names.
import { ConfigError } from '../errors.ts';

/** Parameters matching freeze.include (and not freeze.exclude) are frozen. */
export function frozenSet(names: readonly string[], freeze: { include: string[]; exclude: string[] }): Set<string> {
  const compile = (patterns: string[], key: string): RegExp[] =>
    patterns.map((p) => {
      try {
        return new RegExp(p);
      } catch (err) {
        throw new ConfigError(`freeze.${key}: invalid regex ${JSON.stringify(p)} (${(err as Error).message})`, { where: `freeze.${key}` });
      }
    });
  const inc = compile(freeze.include, 'include');
  const exc = compile(freeze.exclude, 'exclude');
  return new Set(names.filter((n) => inc.some((r) => r.test(n)) && !exc.some((r) => r.test(n))));
}
