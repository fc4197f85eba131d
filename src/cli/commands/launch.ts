// `sftkit launch`: starts N sftkit workers through OpenMPI's mpirun (one node, or many through a hostfile),
// one log per worker (worker_<r>.log), optionally streamed; plus the hidden `mpi-info` check a worker can run.
// SIGINT, SIGTERM and SIGUSR1 reach every worker as SIGUSR1, which mpirun forwards as it is (it would turn
// SIGINT or SIGTERM into a kill), so all ranks save the same step's checkpoint and stop.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { mpi } from '../../backend/collectives.ts';
import { host } from '../../backend/host.ts';
import { INSTALL_MPI_HINT, initProcessGroup } from '../../distributed/index.ts';
import { ConfigError } from '../../errors.ts';
import { STOP_SIGNALS, type StopSignal, stopExitCode, stopSignalOfExitCode, stopTimeoutSeconds } from '../stop-signals.ts';

interface LaunchFlags {
  worker_num: string;
  local_worker_num?: string;
  hostfile?: string;
  log_dir?: string;
  join?: boolean;
  cluster_time_out: string;
  mpirun: string;
}

/** Runs in every worker under `sh -c`: names its log by rank, gives it its share of the node's cores, execs node. */
const WORKER_SHELL = [
  'log="$1/worker_${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}.log"; shift',
  'mkdir -p "$(dirname "$log")" || exit 1',
  'if [ -z "$SFTKIT_THREADS" ]; then',
  '  n=$(( $(nproc) / ${OMPI_COMM_WORLD_LOCAL_SIZE:-1} )); [ "$n" -ge 1 ] || n=1; export SFTKIT_THREADS=$n',
  'fi',
  'exec "$@" > "$log" 2>&1',
].join('\n');

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`launch: ${flag} must be a positive integer, got ${value}`, { where: flag });
  return n;
}

/** The sftkit entry point next to this file (src/cli/commands or dist/cli/commands -> bin/sftkit.js). */
function sftkitEntry(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'sftkit.js');
}

/** The default log folder: <output_dir>/msrun_log, with output_dir taken from the worker arguments when given. */
function defaultLogDir(args: readonly string[]): string {
  let out = './output';
  args.forEach((a, i) => {
    if (a === '--output_dir' && args[i + 1] !== undefined) out = args[i + 1] as string;
    else if (a.startsWith('--output_dir=')) out = a.slice('--output_dir='.length);
  });
  return join(out, 'msrun_log');
}

/** The mpirun command line for this launch. */
export function mpirunArgs(opts: {
  workers: number;
  localWorkers: number | undefined;
  hostfile: string | undefined;
  multiNode: boolean;
  logDir: string;
  args: readonly string[];
  root: boolean;
}): string[] {
  const a = ['-np', String(opts.workers), '--bind-to', 'none'];
  if (opts.root) a.push('--allow-run-as-root');
  if (opts.hostfile !== undefined) a.push('--hostfile', opts.hostfile);
  if (opts.localWorkers !== undefined) a.push('--map-by', `ppr:${opts.localWorkers}:node`);
  // One node: the user chose the worker count, so more workers than cores is allowed (threads are shared out).
  if (!opts.multiNode) a.push('--oversubscribe');
  // Local ranks inherit the environment; remote ones get these explicitly.
  for (const v of ['PATH', 'LD_LIBRARY_PATH', 'NODE_OPTIONS', 'SFTKIT_THREADS', 'SFTKIT_STOP_TIMEOUT', 'HF_HOME', 'HF_HUB_OFFLINE']) {
    if (process.env[v] !== undefined) a.push('-x', v);
  }
  a.push('sh', '-c', WORKER_SHELL, 'sftkit-worker', opts.logDir, process.execPath, sftkitEntry(), ...opts.args);
  return a;
}

/** Streams new lines of every worker log to the terminal, prefixed by rank, until stopped. */
function follow(logDir: string, workers: number): { poll: () => void; stop: () => void } {
  const at = new Array<number>(workers).fill(0);
  const carry = new Array<string>(workers).fill('');
  const chunk = Buffer.alloc(1 << 16);
  const poll = (): void => {
    for (let r = 0; r < workers; r++) {
      const path = join(logDir, `worker_${r}.log`);
      if (!existsSync(path)) continue;
      const size = statSync(path).size;
      if (size < (at[r] as number)) at[r] = 0; // truncated: the worker started over
      if (size <= (at[r] as number)) continue;
      const fd = openSync(path, 'r');
      try {
        let n: number;
        while ((n = readSync(fd, chunk, 0, chunk.length, at[r] as number)) > 0) {
          at[r] = (at[r] as number) + n;
          const text = (carry[r] as string) + chunk.subarray(0, n).toString('utf8');
          const lines = text.split('\n');
          carry[r] = lines.pop() as string;
          for (const line of lines) process.stdout.write(`[worker ${r}] ${line}\n`);
        }
      } finally {
        closeSync(fd);
      }
    }
  };
  const stop = (): void => {
    poll();
    carry.forEach((rest, r) => {
      if (rest) process.stdout.write(`[worker ${r}] ${rest}\n`);
    });
  };
  return { poll, stop };
}

async function launch(flags: LaunchFlags, args: string[]): Promise<void> {
  const workers = positiveInt(flags.worker_num, '--worker_num') as number;
  const localWorkers = positiveInt(flags.local_worker_num, '--local_worker_num');
  const timeout = Number(flags.cluster_time_out);
  if (!(timeout > 0)) throw new ConfigError(`launch: --cluster_time_out must be > 0 seconds, got ${flags.cluster_time_out}`);
  if (args.length === 0) throw new ConfigError('launch: give the worker command after --, e.g. sftkit launch --worker_num 2 -- run --config c.yaml');
  // Several nodes: named by a hostfile, or by the scheduler's allocation that mpirun reads itself (Slurm).
  const multiNode = flags.hostfile !== undefined || (localWorkers !== undefined && localWorkers < workers);
  if (multiNode && flags.hostfile === undefined && process.env.SLURM_JOB_NODELIST === undefined) {
    throw new ConfigError(`launch: ${workers} workers at ${localWorkers} per node need a --hostfile naming the nodes`, { where: '--hostfile' });
  }
  if (flags.hostfile !== undefined && !existsSync(flags.hostfile)) {
    throw new ConfigError(`launch: hostfile ${flags.hostfile} does not exist`, { where: flags.hostfile });
  }
  if (!mpi.available()) {
    throw new ConfigError('launch: this sftkit addon was built without MPI', { hint: INSTALL_MPI_HINT });
  }
  if (spawnSync(flags.mpirun, ['--version'], { stdio: 'ignore' }).error) {
    throw new ConfigError(`launch: ${flags.mpirun} was not found`, { hint: INSTALL_MPI_HINT });
  }
  const logDir = resolve(flags.log_dir ?? defaultLogDir(args));
  mkdirSync(logDir, { recursive: true });
  // Logs of an earlier run would be streamed again and make start-up look done: remove them first.
  for (let r = 0; r < workers; r++) rmSync(join(logDir, `worker_${r}.log`), { force: true });
  const root = process.getuid?.() === 0;
  const argv = mpirunArgs({ workers, localWorkers, hostfile: flags.hostfile, multiNode, logDir, args, root });
  const cores = cpus().length;
  const perNode = localWorkers ?? workers;
  process.stderr.write(
    `sftkit launch: ${workers} workers (${perNode} per node, ~${Math.max(1, Math.floor(cores / perNode))} threads each here); logs in ${logDir}\n`,
  );
  const stopTimeout = stopTimeoutSeconds();
  // mpirun gets its own process group, so a terminal's Ctrl-C reaches only this launcher, which decides.
  const child = spawn(flags.mpirun, argv, { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  let stopping: StopSignal | null = null;
  const hardStop = (why: string): void => {
    process.stderr.write(`sftkit launch: ${why}; stopping the job\n`);
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  };
  const forward = (sig: StopSignal): void => {
    if (stopping !== null) {
      if (sig !== 'SIGUSR1') hardStop(`received ${sig} again`);
      return;
    }
    stopping = sig;
    process.stderr.write(
      `sftkit launch: received ${sig}: every worker saves a checkpoint after its current step and stops (SIGINT or SIGTERM again stops the job at once)\n`,
    );
    child.kill('SIGUSR1');
    // The workers bound their own stop by SFTKIT_STOP_TIMEOUT; this is the backstop should one not be listening.
    setTimeout(() => hardStop(`the workers did not stop within ${stopTimeout + 30} s of ${sig}`), (stopTimeout + 30) * 1000).unref();
  };
  const handlers = STOP_SIGNALS.map((sig) => [sig, (): void => forward(sig)] as const);
  for (const [sig, handler] of handlers) process.on(sig, handler);
  const tail = flags.join === true ? follow(logDir, workers) : null;
  const started = Date.now();
  let startedAll = false;
  const timer = setInterval(() => {
    tail?.poll();
    if (!startedAll) {
      // A worker has started once its shell opened its log. Across nodes only this node's logs are visible
      // (unless --log_dir is shared), so there the bound is on rank 0, which mpirun places on this node.
      let n = 0;
      for (let r = 0; r < workers; r++) if (existsSync(join(logDir, `worker_${r}.log`))) n++;
      const need = multiNode ? 1 : workers;
      if (n >= need) startedAll = true;
      else if (Date.now() - started > timeout * 1000) {
        process.stderr.write(`sftkit launch: only ${n} of ${workers} workers started within ${timeout} s (--cluster_time_out); stopping the job\n`);
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
        startedAll = true;
        process.exitCode = 1;
      }
    }
  }, 200);
  const code = await new Promise<number>((done) => {
    child.on('error', (err) => {
      process.stderr.write(`sftkit launch: cannot run ${flags.mpirun}: ${err.message}\n`);
      done(1);
    });
    child.on('exit', (c, sig) => done(c ?? (sig ? 128 + 15 : 1)));
  });
  clearInterval(timer);
  tail?.stop();
  for (const [sig, handler] of handlers) process.off(sig, handler);
  if (stopping !== null && stopSignalOfExitCode(code) === 'SIGUSR1') {
    process.stderr.write(`sftkit launch: stopped on ${stopping}: the workers saved a checkpoint at the same step; continue with --resume_training\n`);
    process.exitCode = stopExitCode(stopping);
  } else if (code !== 0) {
    process.stderr.write(`sftkit launch: the job failed (mpirun exit code ${code}); see the worker logs in ${logDir}\n`);
    process.exitCode = code;
  } else if (process.exitCode === undefined) {
    process.stderr.write(`sftkit launch: all ${workers} workers finished; logs in ${logDir}\n`);
  }
}

/** `sftkit mpi-info`: each worker reports its rank and threads and checks one all-reduce (a launch smoke test). */
function mpiInfo(): void {
  const pg = initProcessGroup();
  const [sum] = pg.allReduceNumbers([pg.rank + 1]);
  const expected = (pg.size * (pg.size + 1)) / 2;
  console.log(
    `rank ${pg.rank} of ${pg.size} (local ${pg.localRank} of ${pg.localSize}), backend ${pg.backend}, ` +
      `${host.getThreads()} threads, all-reduce ${sum === expected ? 'ok' : `WRONG (${sum}, expected ${expected})`}`,
  );
  if (sum !== expected) process.exitCode = 1;
}

export function registerLaunch(program: Command): void {
  program
    .command('launch')
    .description('run sftkit on N workers through mpirun: sftkit launch --worker_num N -- run --config ...')
    .requiredOption('--worker_num <n>', 'total number of workers (MPI ranks)')
    .option('--local_worker_num <m>', 'workers per node (multi-node, with --hostfile)')
    .option('--hostfile <file>', "OpenMPI hostfile naming the nodes ('node1 slots=8' per line)")
    .option('--log_dir <dir>', 'folder of worker_<r>.log (default <output_dir>/msrun_log)')
    .option('--join', 'stream every worker log to the terminal')
    .option('--cluster_time_out <s>', 'seconds every worker has to start', '600')
    .option('--mpirun <path>', 'the mpirun to use', 'mpirun')
    .argument('<args...>', 'the sftkit command each worker runs (after --)')
    .action(async (args: string[], flags: LaunchFlags) => launch(flags, args));
  program
    .command('mpi-info', { hidden: true })
    .description('print this rank, the world size and threads, and check one all-reduce')
    .action(() => mpiInfo());
}
