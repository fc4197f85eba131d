// bench/distributed: config S training tokens/s for 1 rank × 2 threads vs 2 ranks × 1 thread (MPI), and
// memory per rank with and without ZeRO-1, in one run. Usage: node --import tsx bench/distributed/run.ts
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitIfMissing } from '../lib/requirements.ts';

exitIfMissing('bench/distributed/run.ts', ['mpi']);

const worker = ['--import', 'tsx', 'bench/distributed/worker.ts'];
const root = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
interface Row { rank: number; world: number; shard: boolean; tokens_per_s: number; peak_rss_mb: number; optimizer_mb: number }

function parse(stdout: string): Row[] {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Row);
}
function go(cmd: string, args: string[], threads: string): Row[] {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, SFTKIT_THREADS: threads } });
  if (r.status !== 0) throw new Error(`${cmd} failed:\n${r.stderr}`);
  return parse(r.stdout);
}

console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores); config S (dim 256, 4 layers, vocab 4096, seq 256, global batch 8), fp32 AdamW`);
console.log('| setup | optimizer | tokens/s | peak RSS per rank (MB) | AdamW moments per rank (MB) |');
console.log('|---|---|---|---|---|');
const one = go(process.execPath, [...worker, 'noshard'], '2')[0] as Row;
console.log(`| 1 rank × 2 threads | AdamW | ${one.tokens_per_s.toFixed(0)} | ${one.peak_rss_mb.toFixed(0)} | ${one.optimizer_mb.toFixed(1)} |`);
for (const shard of ['noshard', 'shard']) {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-bench-dp-'));
  const rows = go('mpirun', ['-np', '2', '--bind-to', 'none', '--oversubscribe', ...root, process.execPath, ...worker, shard, '6', dir], '1');
  rmSync(dir, { recursive: true, force: true });
  const r0 = rows.find((r) => r.rank === 0) as Row;
  const rss = Math.max(...rows.map((r) => r.peak_rss_mb));
  console.log(`| 2 ranks × 1 thread | ${shard === 'shard' ? 'ZeRO-1' : 'AdamW (replicated)'} | ${r0.tokens_per_s.toFixed(0)} | ${rss.toFixed(0)} | ${r0.optimizer_mb.toFixed(1)} |`);
}
