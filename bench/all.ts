// `npm run bench`: every comparison of bench/ side by side in one command, written into docs/BENCHMARKS.md
// between marker comments (hand-written prose outside the markers is kept). Options: see USAGE in lib/suite.ts.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describeMachine, loadAverage } from './lib/machine.ts';
import { replaceSections } from './lib/markdown.ts';
import { parseBenchOutput } from './lib/report.ts';
import { type SectionResult, type SectionSpec, type SuiteOptions, UsageError, parseSuiteArgs, renderSection, renderSummary, sectionCommand } from './lib/suite.ts';

const ROOT = join(import.meta.dirname, '..');
const isoNow = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** Why a section cannot run here, or null. */
function missing(s: SectionSpec): string | null {
  if (s.needs?.command && spawnSync('sh', ['-c', `command -v ${s.needs.command}`]).status !== 0) return `\`${s.needs.command}\` is not installed`;
  if (s.needs?.scriptFlag && !readFileSync(join(ROOT, s.script), 'utf8').includes(`'${s.needs.scriptFlag}'`)) return `${s.script} does not support ${s.needs.scriptFlag} yet`;
  return null;
}

/** Runs one bench, echoing its output live, and collects its markdown and findings. */
async function runSection(s: SectionSpec, quick: boolean): Promise<SectionResult> {
  const command = sectionCommand(s, quick);
  const started = isoNow();
  const load = { start: loadAverage(), end: '' };
  const why = missing(s);
  if (why) return { spec: s, command, status: 'skipped', text: why, findings: [], started, seconds: 0, load: { start: load.start, end: load.start } };
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
    return { spec: s, command, status: 'failed', text: `exit status ${code}\n${tail}`, findings: [], started, seconds, load };
  }
  const { text, findings } = parseBenchOutput(stdout);
  return { spec: s, command, status: 'ok', text, findings, started, seconds, load };
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
  const sections = [
    { id: 'suite', content: renderSummary({ date, machine, command, quick: opts.quick, results }) },
    ...results.map((r) => ({ id: r.spec.id, content: renderSection(r) })),
  ];
  if (opts.out === null) {
    console.log(sections.map((s) => s.content).join('\n\n'));
  } else {
    const path = resolve(ROOT, opts.out);
    const before = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
    // Written beside the file and renamed, so an interrupted write never leaves half a document.
    writeFileSync(`${path}.tmp`, replaceSections(before, sections));
    renameSync(`${path}.tmp`, path);
    console.error(`\nwrote ${opts.out} (${sections.map((s) => s.id).join(', ')})`);
  }
  const failed = results.filter((r) => r.status === 'failed').map((r) => r.spec.id);
  if (failed.length > 0) console.error(`failed: ${failed.join(', ')}`);
  return failed.length > 0 ? 1 : 0;
}

process.exitCode = await main();
