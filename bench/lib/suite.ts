// The benchmark suite's plan and its report, apart from running anything: which benches exist and with what
// arguments (full and --quick), the command-line options of `npm run bench`, and the markdown of the results.
import { outputToMarkdown, table } from './markdown.ts';
import type { Finding } from './report.ts';

export interface SectionSpec {
  /** Marker id in docs/BENCHMARKS.md and the name for --only/--skip. */
  id: string;
  title: string;
  /** The bench script, run as `node --import tsx <script> <args>`. */
  script: string;
  args: readonly string[];
  quickArgs: readonly string[];
  /** What the section needs that may be missing: a command on PATH, or a flag the script must support. */
  needs?: { command?: string; scriptFlag?: string };
}

export const SECTIONS: readonly SectionSpec[] = [
  { id: 'gemm', title: 'GEMM fp32 vs OpenBLAS', script: 'bench/gemm/run.ts', args: ['--reps', '15'], quickArgs: ['--reps', '3'] },
  { id: 'train', title: 'Training fp32 vs tuned PyTorch', script: 'bench/train/run.ts', args: ['S', 'M', 'L', '--steps', '5'], quickArgs: ['S', 'M', 'L', '--steps', '2'] },
  // Runs once bench/train/run.ts understands --bf16 (sftkit bf16 vs PyTorch autocast); skipped with a note before.
  {
    id: 'train-bf16', title: 'Training bf16 vs PyTorch autocast', script: 'bench/train/run.ts', args: ['M', 'L', '--steps', '5', '--bf16'],
    quickArgs: ['M', 'L', '--steps', '2', '--bf16'], needs: { scriptFlag: '--bf16' },
  },
  { id: 'generate', title: 'Generation: prefill and KV-cache decoding vs PyTorch', script: 'bench/generate/run.ts', args: ['M', 'L'], quickArgs: ['M', 'L', '--runs', '1', '--new', '32'] },
  { id: 'tokenizer', title: 'Tokenization vs spm_encode', script: 'bench/tokenizer/run.ts', args: ['--runs', '3'], quickArgs: ['--runs', '1', '--json-mb', '0.5'] },
  { id: 'data', title: 'Data preprocessing', script: 'bench/data/run.ts', args: [], quickArgs: ['--records', '5000'] },
  { id: 'convert', title: 'Conversion RSS (Llama-2-7B shapes)', script: 'bench/convert/run.ts', args: ['--layers', '2'], quickArgs: ['--layers', '1'] },
  { id: 'distributed', title: 'Data parallel on MPI', script: 'bench/distributed/run.ts', args: [], quickArgs: [], needs: { command: 'mpirun' } },
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
  /** When the section started (ISO 8601, UTC). */
  started: string;
  seconds: number;
  /** One-minute load averages at its start and end. */
  load: { start: string; end: string };
}

/** One section's markdown: title, the command with its time and load, then the bench's own output. */
export function renderSection(r: SectionResult): string {
  const head = `### ${r.spec.title}\n\n\`\`\`sh\n${r.command.join(' ')}\n\`\`\``;
  if (r.status === 'skipped') return `${head}\n\nNot run (${r.started}): ${r.text}`;
  const meta = `${r.started}: ${r.seconds.toFixed(0)} s, load average ${r.load.start} → ${r.load.end}.`;
  if (r.status === 'failed') return `${head}\n\n${meta} **Failed:**\n\n\`\`\`\n${r.text}\n\`\`\``;
  return `${head}\n\n${meta}\n\n${outputToMarkdown(r.text)}`;
}

/** The suite's summary: where and how it ran, and every finding against its target. */
export function renderSummary(opts: {
  date: string;
  machine: { cpu: string; cores: number; flags: string; versions: string; commit: string };
  command: string;
  quick: boolean;
  results: readonly SectionResult[];
}): string {
  const { machine, results } = opts;
  const verdict = (f: Finding): string => (f.met === null ? '' : f.met ? 'met' : 'not met');
  const rows = results.flatMap((r) => r.findings.map((f) => [f.figure, f.target, f.measured, verdict(f)]));
  const status = results.map((r) => `${r.spec.id} ${r.status === 'ok' ? `(${r.seconds.toFixed(0)} s)` : r.status}`).join(', ');
  return [
    // A level-2 heading: appended at the end of docs/BENCHMARKS.md, the sections after it become its subsections.
    '## All benchmarks, side by side (`npm run bench`)',
    `Run ${opts.date}${opts.quick ? ' in --quick mode (fewer steps and runs: indicative only)' : ''}, commit ${machine.commit}, with:`,
    `\`\`\`sh\n${opts.command}\n\`\`\``,
    `Machine: ${machine.cpu}, ${machine.cores} cores; ${machine.flags}.`,
    `Versions: ${machine.versions}.`,
    `Sections: ${status}. Each bench runs both engines in the same process tree, one after the other, so load from other users of the machine falls on both; ratios hold up better than absolute numbers.`,
    rows.length > 0 ? table(['figure', 'target', 'measured', 'verdict'], rows) : 'No findings (no section reported any).',
  ].join('\n\n');
}
