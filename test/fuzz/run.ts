// The fuzz campaign from the command line (docs/RELIABILITY.md):
//   node --import tsx test/fuzz/run.ts [--cases 100000] [--target NAME] [--seed S] [--first N] [--case N] [--json FILE]
// prints per-target counts of outcomes (ok / typed error / unnamed error / crash / hang / blow-up) and the
// first failing cases; `--case N` replays one case and prints its outcome in full. Exits 1 on any failure.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
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
      const r = runCase(prepared, t.name, seed, Number(values.case));
      console.log(`${t.name} seed ${seed} case ${r.index}: ${r.outcome} in ${r.ms.toFixed(1)} ms (${r.file})\n${r.detail}`);
    } finally {
      prepared.dispose();
    }
  }
  process.exit(0);
}

const cases = Number(values.cases);
const reports: TargetReport[] = [];
const pad = (s: string | number, n: number): string => String(s).padStart(n);
console.log(`${'target'.padEnd(24)}${OUTCOMES.map((o) => pad(o, 9)).join('')}${pad('seconds', 9)}`);
for (const t of targets) {
  const report = runTarget(t, {
    cases,
    seed,
    first: Number(values.first),
    onCase: (r) => {
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
