// Worker for distributed tests (run under mpirun -np 2): rank 1 fails in the way argv[2] names while rank 0
// waits in an all-reduce that can never complete; the whole job must end with a non-zero status, not hang.
import { initProcessGroup } from '../../../src/distributed/index.ts';
import { Tensor } from '../../../src/tensor/index.ts';

const mode = process.argv[2] ?? 'throw';
const pg = initProcessGroup();
pg.barrier();
if (pg.rank === 1) {
  if (mode === 'throw') throw new Error('rank 1 fails on purpose');
  if (mode === 'reject') void Promise.reject(new Error('rank 1 rejects on purpose'));
  if (mode === 'exit-code') process.exitCode = 3; // what the CLI does after printing a typed error
  if (mode === 'signal') process.kill(process.pid, 'SIGKILL');
} else {
  pg.allReduce(Tensor.zeros([4]));
  console.log('rank 0 was not stopped');
}
