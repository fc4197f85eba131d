// What the benches need from the system besides node and the addon (the peers they compare against), how to
// tell whether it is installed, and the Debian package that brings it: a missing tool skips its bench with one line.
import { spawnSync } from 'node:child_process';
import { PYTHON } from './torch-env.ts';

export interface Tool {
  /** What the bench needs, in words. */
  what: string;
  /** The Debian package that installs it. */
  debian: string;
  /** How to tell it is there: a command on PATH, a Python module of /usr/bin/python3, or a C header and library that link. */
  probe: { command: string } | { python: string } | { header: string; lib: string };
}

export const TOOLS = {
  cc: { what: 'a C compiler (`cc`)', debian: 'gcc', probe: { command: 'cc' } },
  openblas: { what: 'OpenBLAS headers and library (`cblas.h`, `-lopenblas`)', debian: 'libopenblas-dev', probe: { header: 'cblas.h', lib: 'openblas' } },
  torch: { what: `PyTorch (\`import torch\` in ${PYTHON})`, debian: 'python3-torch', probe: { python: 'torch' } },
  spm: { what: '`spm_encode`', debian: 'sentencepiece', probe: { command: 'spm_encode' } },
  time: { what: 'GNU time (`/usr/bin/time`)', debian: 'time', probe: { command: '/usr/bin/time' } },
  mpi: { what: '`mpirun`', debian: 'openmpi-bin', probe: { command: 'mpirun' } },
} as const satisfies Record<string, Tool>;

export type ToolName = keyof typeof TOOLS;

/** The apt-get line that installs these tools. */
export function installLine(names: readonly ToolName[]): string {
  return `apt-get install -y --no-install-recommends ${[...new Set(names.map((n) => TOOLS[n].debian))].join(' ')}`;
}

/** The one-line reason a bench is skipped, e.g. "needs PyTorch (…): apt-get install … python3-torch". */
export function skipReason(missing: readonly ToolName[]): string {
  const whats = missing.map((n) => TOOLS[n].what);
  const list = whats.length <= 1 ? whats.join('') : `${whats.slice(0, -1).join(', ')} and ${whats[whats.length - 1]}`;
  return `needs ${list}: \`${installLine(missing)}\``;
}

/** Whether a tool is installed here (runs a command, python or the C compiler). */
export function probe(tool: Tool): boolean {
  const ok = (cmd: string, args: string[], input?: string): boolean => spawnSync(cmd, args, { input, stdio: ['pipe', 'ignore', 'ignore'], timeout: 60_000 }).status === 0;
  if ('command' in tool.probe) return ok('sh', ['-c', `command -v ${tool.probe.command}`]);
  if ('python' in tool.probe) return ok(PYTHON, ['-c', `import ${tool.probe.python}`]);
  // Compiled and linked, since the header alone (or the runtime library alone, which PyTorch pulls in) is not enough.
  return ok('cc', ['-x', 'c', '-', '-o', '/dev/null', `-l${tool.probe.lib}`], `#include <${tool.probe.header}>\nint main(void) { return 0; }\n`);
}

/** The tools among `names` that are missing here, in order; `isThere` is the probe (tests pass their own). */
export function missingTools(names: readonly ToolName[], isThere: (t: Tool) => boolean = probe): ToolName[] {
  return names.filter((n) => !isThere(TOOLS[n]));
}

/** For a bench run on its own: prints the skip reason and exits (status 3) when a tool it needs is missing. */
export function exitIfMissing(script: string, names: readonly ToolName[]): void {
  const missing = missingTools(names);
  if (missing.length === 0) return;
  console.error(`${script}: not run: ${skipReason(missing)}`);
  process.exit(3);
}
