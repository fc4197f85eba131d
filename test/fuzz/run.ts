// The fuzz campaign from the command line (docs/RELIABILITY.md):
//   node --import tsx test/fuzz/run.ts [--cases 100000] [--target NAME] [--seed S] [--first N] [--case N] [--json FILE]
// prints per-target counts of outcomes (ok / typed error / unnamed error / crash / hang / blow-up) and the
// first failing cases; `--case N` replays one case and prints its outcome in full. Exits 1 on any failure;
// a case that never ends is reported by a watchdog thread, which then kills the run.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { OUTCOMES, runCase, runTarget, type TargetReport } from './harness.ts';
import { TARGETS } from './targets.ts';

// The yaml library reports odd aliases through process warnings; they are expected here.
process.removeAllListeners('warning');

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    target: { type: 'string', multiple: true },
    seed: { type: 'string', default: '1' },
    case: { type: 'string' },
    first: { type: 'string', default: '0' },
    json: { type: 'string' },
  },
});
const seed = Number(values.seed);
const targets = values.target === undefined ? TARGETS : TARGETS.filter((t) => values.target!.includes(t.name));
if (targets.length === 0) {
  console.error(`no target named ${values.target!.join(', ')}; targets: ${TARGETS.map((t) => t.name).join(', ')}`);
  process.exit(2);
}

if (values.case !== undefined) {
  for (const t of targets) {
    const prepared = t.prepare();
    try {
      const r = runCase(prepared, { name: t.name, seed, index: Number(values.case) });
      console.log(`${t.name} seed ${seed} case ${r.index}: ${r.outcome} in ${r.ms.toFixed(1)} ms (${r.file})\n${r.detail}`);
    } finally {
      prepared.dispose();
    }
  }
  process.exit(0);
}

/** Wall-clock seconds one case may run before the watchdog ends the campaign (far past the 2 s CPU limit). */
const WATCHDOG_S = 60;

/**
 * A watchdog thread: an endless loop in a parser cannot be interrupted from JavaScript, so when no case has
 * finished for WATCHDOG_S seconds this thread prints the case to replay and kills the process.
 */
async function startWatchdog(names: readonly string[], seed: number): Promise<Int32Array> {
  const beat = new Int32Array(new SharedArrayBuffer(12)); // [target index, last finished case, generation]
  beat[1] = -1;
  const code = `
    const { workerData } = require('node:worker_threads');
    const { writeSync } = require('node:fs');
    const { beat, names, limitMs, seed } = workerData;
    let seen = -1;
    let since = Date.now();
    setInterval(() => {
      const g = Atomics.load(beat, 2);
      if (g !== seen) { seen = g; since = Date.now(); return; }
      if (Date.now() - since < limitMs) return;
      const target = names[Atomics.load(beat, 0)];
      const at = Atomics.load(beat, 1) + 1;
      writeSync(2, 'hang: ' + target + ' case ' + at + ' ran for over ' + limitMs / 1000 + ' s; replay it with --target ' + target + ' --seed ' + seed + ' --case ' + at + '\\n');
      process.kill(process.pid, 'SIGKILL');
    }, 1000);`;
  const worker = new Worker(code, { eval: true, execArgv: [], workerData: { beat, names, seed, limitMs: WATCHDOG_S * 1000 } });
  // The campaign never yields to the event loop, so the thread must be running before it starts.
  await new Promise((resolve) => worker.once('online', resolve));
  worker.unref();
  return beat;
}

const cases = Number(values.cases);
const beat = await startWatchdog(targets.map((t) => t.name), seed);
const reports: TargetReport[] = [];
const pad = (s: string | number, n: number): string => String(s).padStart(n);
console.log(`${'target'.padEnd(24)}${OUTCOMES.map((o) => pad(o, 9)).join('')}${pad('seconds', 9)}`);
for (const [ti, t] of targets.entries()) {
  Atomics.store(beat, 0, ti);
  Atomics.store(beat, 1, Number(values.first) - 1);
  Atomics.add(beat, 2, 1);
  const report = runTarget(t, {
    cases,
    seed,
    first: Number(values.first),
    onCase: (r) => {
      Atomics.store(beat, 1, r.index);
      Atomics.add(beat, 2, 1);
      if (r.outcome !== 'ok' && r.outcome !== 'typed') process.stderr.write(`  ${t.name} case ${r.index}: ${r.outcome} (${r.file}): ${r.detail.split('\n').slice(0, 3).join(' | ')}\n`);
      if (r.index % 10_000 === 9_999) process.stderr.write(`  ${t.name}: ${r.index + 1} cases\n`);
    },
  });
  reports.push(report);
  console.log(`${t.name.padEnd(24)}${OUTCOMES.map((o) => pad(report.counts[o], 9)).join('')}${pad(report.seconds.toFixed(1), 9)}`);
  for (const f of report.failures.slice(0, 5)) console.log(`    case ${f.index} ${f.outcome} (${f.file}, ${f.ms.toFixed(0)} ms): ${f.detail.split('\n').slice(0, 3).join(' | ')}`);
}
if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify({ seed, first: Number(values.first), cases, reports }, null, 2)}\n`);
const bad = reports.reduce((n, r) => n + r.counts.unnamed + r.counts.crash + r.counts.hang + r.counts.blowup, 0);
process.exit(bad === 0 ? 0 : 1);
