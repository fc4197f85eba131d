// What a bench tells the suite (bench/all.ts) besides its markdown output: findings against DESIGN.md's targets
// and the GEMM peaks it measured, printed as one tagged JSON line when SFTKIT_BENCH_JSON=1 so that the plain
// command's output stays as it was.

/** One measured figure against its target, e.g. training tokens/s at M vs tuned PyTorch. */
export interface Finding {
  figure: string;
  target: string;
  measured: string;
  /** Whether the target is met; null where there is no target (a figure recorded for reference). */
  met: boolean | null;
}

/** A GEMM peak a bench measured: the denominator of model FLOP utilisation, and the CPU's figure in the report. */
export interface Peak {
  dtype: 'float32' | 'bfloat16';
  gflops: number;
  /** Which kernel ran, e.g. "vdpbf16ps (AVX512_BF16)". */
  kernel: string;
  /** Where and how, e.g. "bench/train config M: best single run of 8 at 2048×512×2048 NT, …". */
  how: string;
}

export const JSON_TAG = '@@sftkit-bench ';

/** Prints the findings (and peaks) line for the suite (only under SFTKIT_BENCH_JSON=1). */
export function emitFindings(findings: readonly Finding[], peaks: readonly Peak[] = []): void {
  if (process.env['SFTKIT_BENCH_JSON'] === '1') console.log(JSON_TAG + JSON.stringify({ findings, peaks }));
}

/**
 * Splits a bench's stdout into its markdown output and the findings and peaks of its tagged lines (several
 * lines are concatenated; an unreadable one is kept as text, so nothing a bench printed is lost).
 */
export function parseBenchOutput(stdout: string): { text: string; findings: Finding[]; peaks: Peak[] } {
  const findings: Finding[] = [];
  const peaks: Peak[] = [];
  const text: string[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith(JSON_TAG)) {
      text.push(line);
      continue;
    }
    try {
      const parsed = JSON.parse(line.slice(JSON_TAG.length)) as { findings?: Finding[]; peaks?: Peak[] };
      findings.push(...(parsed.findings ?? []));
      peaks.push(...(parsed.peaks ?? []));
    } catch {
      text.push(line);
    }
  }
  return { text: text.join('\n').trim(), findings, peaks };
}
