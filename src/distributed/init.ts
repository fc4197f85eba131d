// Picks the process group for this process: MPI when it was started by a launcher (mpirun, or srun with
// PMI/PMIx) and the addon has MPI; a single-process group otherwise; a clear error when a multi-process
// run was asked for without MPI.
import { mpi } from '../backend/collectives.ts';
import { nativeBackend } from '../backend/native.ts';
import { activeBackend } from '../backend/select.ts';
import { ConfigError } from '../errors.ts';
import { MpiProcessGroup, installFailureHandlers } from './mpi.ts';
import type { ProcessGroup } from './process-group.ts';
import { SingleProcessGroup } from './single.ts';

export const INSTALL_MPI_HINT =
  'install OpenMPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) and rebuild the addon (npm run build, or npm rebuild sftkit)';

/** The world size a launcher announced in the environment, or null when this process was not launched by one. */
export function launchedWorldSize(env: NodeJS.ProcessEnv = process.env): number | null {
  const raw = env.OMPI_COMM_WORLD_SIZE ?? env.PMI_SIZE ?? env.PMIX_SIZE ?? (env.PMIX_RANK !== undefined ? env.SLURM_NTASKS : undefined);
  if (raw === undefined) return null;
  const n = Number(raw);
  return Number.isInteger(n) && n > 0 ? n : null;
}

export function mpiAvailable(): boolean {
  return mpi.available();
}

let current: ProcessGroup | null = null;

/**
 * The process group of this run (made once; later calls return the same group). `worldSize` is what the
 * config or command asks for, if anything: a request for more than one process fails unless MPI runs it.
 */
export function initProcessGroup(opts: { worldSize?: number } = {}): ProcessGroup {
  if (current) return current;
  const launched = launchedWorldSize();
  const wanted = opts.worldSize ?? launched ?? 1;
  const backend = activeBackend();
  if (wanted > 1 && backend !== nativeBackend) {
    // Collectives read native memory (a CUDA backend would bring NCCL): tensors of another backend cannot take part.
    throw new ConfigError(`a run of ${wanted} processes: MPI needs the native backend, this process computes on the ${backend.name} backend`, {
      where: 'SFTKIT_BACKEND',
      hint: 'unset SFTKIT_BACKEND (or set it to native) for multi-process runs',
    });
  }
  if (launched !== null && mpi.available() && backend === nativeBackend) {
    const pg = new MpiProcessGroup();
    installFailureHandlers(pg.rank);
    if (opts.worldSize !== undefined && opts.worldSize !== pg.size) {
      throw new ConfigError(`the run asks for ${opts.worldSize} processes but was launched with ${pg.size}`, {
        where: 'parallel_config.data_parallel',
        hint: `start it with sftkit launch --worker_num ${opts.worldSize}, or set data_parallel: auto`,
      });
    }
    current = pg;
    return pg;
  }
  if (wanted > 1 && !mpi.available()) {
    throw new ConfigError(`a run of ${wanted} processes needs MPI, but this sftkit addon was built without it`, {
      where: 'distributed',
      hint: INSTALL_MPI_HINT,
    });
  }
  if (wanted > 1) {
    throw new ConfigError(`a run of ${wanted} processes must be started by a launcher, but this process runs alone`, {
      where: 'parallel_config.data_parallel',
      hint: `start it with sftkit launch --worker_num ${wanted} -- <command> (or mpirun / srun)`,
    });
  }
  current = new SingleProcessGroup();
  return current;
}
