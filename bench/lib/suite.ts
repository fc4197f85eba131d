// The benchmark suite's plan and its report, apart from running anything: which benches exist, with what
// arguments (full and --quick) and what they need installed, the command-line options of `npm run bench`, and
// the markdown of the results (one block per CPU in docs/BENCHMARKS.md).
import type { Machine } from './machine.ts';
import { outputToMarkdown, table } from './markdown.ts';
import type { Finding, Peak } from './report.ts';
import type { ToolName } from './requirements.ts';

export interface SectionSpec {
  /** Marker id in docs/BENCHMARKS.md and the name for --only/--skip. */
  id: string;
  title: string;
  /** The bench script, run as `node --import tsx <script> <args>`. */
  script: string;
  args: readonly string[];
  quickArgs: readonly string[];
  /** The system tools it compares against (bench/lib/requirements.ts); without one the section is skipped. */
  needs: readonly ToolName[];
}

export const SECTIONS: readonly SectionSpec[] = [
  { id: 'gemm', title: 'GEMM fp32 vs OpenBLAS', script: 'bench/gemm/run.ts', args: ['--reps', '15'], quickArgs: ['--reps', '3'], needs: ['cc', 'openblas'] },
  {
    id: 'train', title: 'Training fp32 vs tuned PyTorch', script: 'bench/train/run.ts', args: ['S', 'M', 'L', '--steps', '5'], quickArgs: ['S', 'M', 'L', '--steps', '2'],
    needs: ['torch'],
  },
  {
    id: 'train-bf16', title: 'Training bf16 vs PyTorch autocast', script: 'bench/train/run.ts', args: ['S', 'M', 'L', '--steps', '5', '--bf16'],
    quickArgs: ['S', 'M', 'L', '--steps', '2', '--bf16'], needs: ['torch'],
  },
  {
    id: 'generate', title: 'Generation: prefill and KV-cache decoding vs PyTorch', script: 'bench/generate/run.ts', args: ['M', 'L'],
    quickArgs: ['M', 'L', '--runs', '1', '--new', '32'], needs: ['torch'],
  },
  {
    id: 'tokenizer', title: 'Tokenization vs spm_encode', script: 'bench/tokenizer/run.ts', args: ['--runs', '3'], quickArgs: ['--runs', '1', '--json-mb', '0.5'],
    needs: ['spm', 'time'],
  },
  {
    id: 'serve', title: 'Serving: continuous batching over HTTP (1, 4, 16 streams)', script: 'bench/serve/run.ts', args: ['M'],
    quickArgs: ['M', '--new', '32', '--prompt', '32'], needs: [],
  },
  { id: 'data', title: 'Data preprocessing', script: 'bench/data/run.ts', args: [], quickArgs: ['--records', '5000'], needs: [] },
  { id: 'convert', title: 'Conversion RSS (Llama-2-7B shapes)', script: 'bench/convert/run.ts', args: ['--layers', '2'], quickArgs: ['--layers', '1'], needs: [] },
  { id: 'distributed', title: 'Data parallel on MPI', script: 'bench/distributed/run.ts', args: [], quickArgs: [], needs: ['mpi'] },
];

export interface SuiteOptions {
  quick: boolean;
  sections: SectionSpec[];
  /** Where the report goes; null prints it instead of writing a file. */
  out: string | null;
}

export class UsageError extends Error {}

export const USAGE = `usage: npm run bench -- [--quick] [--only ids] [--skip ids] [--out docs/BENCHMARKS.md | --print]
  ids (comma-separated): ${SECTIONS.map((s) => s.id).join(', ')}`;

/** Parses the suite's arguments. */
export function parseSuiteArgs(argv: readonly string[], all: readonly SectionSpec[] = SECTIONS): SuiteOptions {
  let quick = false;
  let out: string | null = 'docs/BENCHMARKS.md';
  let only: string[] | null = null;
  const skip: string[] = [];
  const ids = (flag: string, v: string | undefined): string[] => {
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a comma-separated list of sections\n${USAGE}`);
    const list = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const unknown = list.filter((id) => !all.some((s) => s.id === id));
    if (unknown.length > 0) throw new UsageError(`unknown section ${unknown.join(', ')} in ${flag}\n${USAGE}`);
    return list;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--quick') quick = true;
    else if (a === '--print') out = null;
    else if (a === '--only') only = ids(a, argv[++i]);
    else if (a === '--skip') skip.push(...ids(a, argv[++i]));
    else if (a === '--out') {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`--out needs a file path\n${USAGE}`);
      out = v;
    } else throw new UsageError(`unknown argument ${a}\n${USAGE}`);
  }
  const sections = all.filter((s) => (only === null || only.includes(s.id)) && !skip.includes(s.id));
  if (sections.length === 0) throw new UsageError(`no section left to run\n${USAGE}`);
  return { quick, sections, out };
}

/** The exact command of a section, as it is run and as the report quotes it. */
export function sectionCommand(s: SectionSpec, quick: boolean): string[] {
  return ['node', '--import', 'tsx', s.script, ...(quick ? s.quickArgs : s.args)];
}

export interface SectionResult {
  spec: SectionSpec;
  command: string[];
  /** 'ok', 'failed' (exit status, stderr tail in `text`) or 'skipped' (why, in `text`). */
  status: 'ok' | 'failed' | 'skipped';
  text: string;
  findings: Finding[];
  /** GEMM peaks the bench measured (the training benches: fp32 and bf16 in each sftkit process). */
  peaks: Peak[];
  /** When the section started (ISO 8601, UTC). */
  started: string;
  seconds: number;
  /** One-minute load averages at its start and end. */
  load: { start: string; end: string };
}

/** One section's markdown: title, the command with its time and load, then the bench's own output. */
export function renderSection(r: SectionResult): string {
  const head = `#### ${r.spec.title}\n\n\`\`\`sh\n${r.command.join(' ')}\n\`\`\``;
  if (r.status === 'skipped') return `${head}\n\nNot run (${r.started}): ${r.text}`;
  const meta = `${r.started}: ${r.seconds.toFixed(0)} s, load average ${r.load.start} → ${r.load.end}.`;
  if (r.status === 'failed') return `${head}\n\n${meta} **Failed:**\n\n\`\`\`\n${r.text}\n\`\`\``;
  return `${head}\n\n${meta}\n\n${outputToMarkdown(r.text)}`;
}

/** The CPU block's first section: what the CPU is (the identity its results are filed under). */
export function renderCpu(machine: Pick<Machine, 'identity' | 'cpu' | 'vendor' | 'family' | 'modelNumber' | 'cores' | 'flags'>): string {
  const numbers = machine.family === null || machine.modelNumber === null ? 'family/model not reported' : `family ${machine.family}, model ${machine.modelNumber}`;
  return [
    `Model name: ${machine.cpu}; vendor ${machine.vendor}, ${numbers}; ${machine.cores} cores.`,
    `ISA flags: ${machine.flags}.`,
    `Results of this CPU are filed under \`${machine.identity.key}\` (model name, family/model, SIMD level and AVX512_BF16); other CPUs keep their own blocks.`,
  ].join('\n\n');
}

/**
 * The CPU's measured GEMM peaks: the best of each dtype over the peaks the run's benches reported (each training
 * process measures both before its steps), or null when no bench measured one (the previous peaks then stay).
 */
export function renderPeaks(opts: { date: string; peaks: readonly Peak[] }): string | null {
  const rows: string[][] = [];
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const of = opts.peaks.filter((p) => p.dtype === dtype);
    if (of.length === 0) continue;
    const best = of.reduce((a, b) => (b.gflops > a.gflops ? b : a));
    rows.push([dtype === 'float32' ? 'fp32' : 'bf16', best.gflops.toFixed(1), best.kernel, best.how, String(of.length)]);
  }
  if (rows.length === 0) return null;
  return [
    `GEMM peaks, ${opts.date}: the best single GEMM of each dtype at training shapes, 2 threads, measured inside the training benches' own processes (model FLOP utilisation in the training sections is against the peak of the same process and dtype).`,
    table(['dtype', 'peak GFLOP/s', 'kernel', 'where (best)', 'processes measured'], rows),
  ].join('\n\n');
}

/** The suite's summary: where and how it ran, and every finding against its target. */
export function renderSummary(opts: {
  date: string;
  machine: Pick<Machine, 'identity' | 'cores' | 'flags' | 'versions' | 'commit'>;
  command: string;
  quick: boolean;
  results: readonly SectionResult[];
}): string {
  const { machine, results } = opts;
  const verdict = (f: Finding): string => (f.met === null ? '' : f.met ? 'met' : 'not met');
  const rows = results.flatMap((r) => r.findings.map((f) => [f.figure, f.target, f.measured, verdict(f)]));
  const status = results.map((r) => `${r.spec.id} ${r.status === 'ok' ? `(${r.seconds.toFixed(0)} s)` : r.status}`).join(', ');
  return [
    // Level 3: under the CPU's level-2 heading, above the sections' level 4.
    '### All benchmarks, side by side (`npm run bench`)',
    `Run ${opts.date}${opts.quick ? ' in --quick mode (fewer steps and runs: indicative only)' : ''}, commit ${machine.commit}, with:`,
    `\`\`\`sh\n${opts.command}\n\`\`\``,
    `Machine: ${machine.identity.label}, ${machine.cores} cores; ${machine.flags}.`,
    `Versions: ${machine.versions}.`,
    `Sections: ${status}. Each bench runs both engines in the same process tree, one after the other, so load from other users of the machine falls on both; ratios hold up better than absolute numbers.`,
    rows.length > 0 ? table(['figure', 'target', 'measured', 'verdict'], rows) : 'No findings (no section reported any).',
  ].join('\n\n');
}
