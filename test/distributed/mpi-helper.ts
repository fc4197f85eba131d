// Runs worker scripts under `mpirun -np N` for the distributed tests, and decides whether they can run here:
// without MPI they skip, unless SFTKIT_REQUIRE_MPI=1 (CI) turns the skip into a failure.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { mpi } from '../../src/backend/collectives.ts';

export const root = join(import.meta.dirname, '..', '..');

function missingMpi(): string | null {
  if (!mpi.available()) return 'the sftkit addon was built without MPI';
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).error) return 'mpirun is not on PATH';
  return null;
}

const reason = missingMpi();

/** True when the test may go on; otherwise skips it (or fails it when SFTKIT_REQUIRE_MPI=1). */
export function needMpi(t: TestContext): boolean {
  if (reason === null) return true;
  if (process.env.SFTKIT_REQUIRE_MPI === '1') {
    throw new Error(`MPI tests are required (SFTKIT_REQUIRE_MPI=1) but ${reason}; install openmpi-bin libopenmpi-dev and rebuild`);
  }
  t.skip(`MPI tests skipped: ${reason} (install openmpi-bin libopenmpi-dev and rebuild; SFTKIT_REQUIRE_MPI=1 makes this a failure)`);
  return false;
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** The mpirun flags every test run uses: no binding, more ranks than cores allowed, root allowed. */
export function mpirunFlags(np: number): string[] {
  const f = ['-np', String(np), '--bind-to', 'none', '--oversubscribe'];
  if (process.getuid?.() === 0) f.push('--allow-run-as-root');
  return f;
}

/** Runs `node --import tsx workers/<worker>.ts args...` on np ranks, one thread each. */
export function mpirunWorker(np: number, worker: string, args: string[] = [], timeoutMs = 60_000): RunResult {
  return run('mpirun', [...mpirunFlags(np), process.execPath, '--import', 'tsx', join(import.meta.dirname, 'workers', `${worker}.ts`), ...args], timeoutMs);
}

export function run(cmd: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = {}): RunResult {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, {
    cwd: root,
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    env: { ...process.env, SFTKIT_THREADS: '1', ...env },
  });
  return {
    status: r.status,
    signal: r.signal,
    timedOut: (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT',
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    seconds: (performance.now() - t0) / 1000,
  };
}

export function describe(r: RunResult): string {
  return `status ${r.status} signal ${r.signal} after ${r.seconds.toFixed(1)} s\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}
