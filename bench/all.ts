// `npm run bench`: every comparison of bench/ side by side in one command, written into this CPU's block of
// docs/BENCHMARKS.md between marker comments (prose outside the markers and other CPUs' blocks are kept).
// Options: see USAGE in lib/suite.ts.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describeMachine, loadAverage } from './lib/machine.ts';
import { replaceCpuSections } from './lib/markdown.ts';
import { parseBenchOutput } from './lib/report.ts';
import { missingTools, skipReason } from './lib/requirements.ts';
import {
  type SectionResult, type SectionSpec, type SuiteOptions, UsageError, parseSuiteArgs, renderCpu, renderPeaks, renderSection, renderSummary, sectionCommand,
} from './lib/suite.ts';

const ROOT = join(import.meta.dirname, '..');
const isoNow = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** Why a section cannot run here (a tool it compares against is not installed), or null. */
function missing(s: SectionSpec): string | null {
  const tools = missingTools(s.needs);
  return tools.length === 0 ? null : skipReason(tools);
}

/** Runs one bench, echoing its output live, and collects its markdown and findings. */
async function runSection(s: SectionSpec, quick: boolean): Promise<SectionResult> {
  const command = sectionCommand(s, quick);
  const started = isoNow();
  const load = { start: loadAverage(), end: '' };
  const why = missing(s);
  if (why) {
    console.error(`\n== ${s.id}: skipped: ${why}`);
    return { spec: s, command, status: 'skipped', text: why, findings: [], peaks: [], started, seconds: 0, load: { start: load.start, end: load.start } };
  }
  console.error(`\n== ${s.id}: ${command.join(' ')}`);
  const t0 = performance.now();
  const child = spawn(process.execPath, command.slice(1), { cwd: ROOT, env: { ...process.env, SFTKIT_BENCH_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    process.stderr.write(d);
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    process.stderr.write(d);
  });
  const code: number = await new Promise((res) => child.on('close', (c) => res(c ?? 1)));
  const seconds = (performance.now() - t0) / 1000;
  load.end = loadAverage();
  if (code !== 0) {
    const tail = stderr.trim().split('\n').slice(-20).join('\n');
    return { spec: s, command, status: 'failed', text: `exit status ${code}\n${tail}`, findings: [], peaks: [], started, seconds, load };
  }
  const { text, findings, peaks } = parseBenchOutput(stdout);
  return { spec: s, command, status: 'ok', text, findings, peaks, started, seconds, load };
}

async function main(): Promise<number> {
  let opts: SuiteOptions;
  try {
    opts = parseSuiteArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  const date = isoNow();
  const machine = describeMachine();
  const results: SectionResult[] = [];
  for (const s of opts.sections) results.push(await runSection(s, opts.quick));
  const command = ['npm run bench --', ...process.argv.slice(2)].join(' ').replace(/ --$/, '');
  const peaks = renderPeaks({ date, peaks: results.flatMap((r) => r.peaks) });
  const sections = [
    { id: 'cpu', content: renderCpu(machine) },
    // Kept from an earlier run when this one measured no peak (e.g. --only tokenizer).
    ...(peaks === null ? [] : [{ id: 'peaks', content: peaks }]),
    { id: 'suite', content: renderSummary({ date, machine, command, quick: opts.quick, results }) },
    ...results.map((r) => ({ id: r.spec.id, content: renderSection(r) })),
  ];
  if (opts.out === null) {
    console.log([`## ${machine.identity.label}`, ...sections.map((s) => s.content)].join('\n\n'));
  } else {
    const path = resolve(ROOT, opts.out);
    const before = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
    // Written beside the file and renamed, so an interrupted write never leaves half a document.
    writeFileSync(`${path}.tmp`, replaceCpuSections(before, { cpu: machine.identity, sections }));
    renameSync(`${path}.tmp`, path);
    console.error(`\nwrote ${opts.out}: ${machine.identity.key} (${sections.map((s) => s.id).join(', ')})`);
  }
  const failed = results.filter((r) => r.status === 'failed').map((r) => r.spec.id);
  if (failed.length > 0) console.error(`failed: ${failed.join(', ')}`);
  return failed.length > 0 ? 1 : 0;
}

process.exitCode = await main();
