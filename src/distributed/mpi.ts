// The process group over MPI (OpenMPI through the addon): collectives on spans of native memory, and the
// failure handling that turns an error on one rank into the end of every rank instead of a hang.
import { MPI_DTYPE, MPI_OP, mpi } from '../backend/collectives.ts';
import { UNARY_OP } from '../backend/compute.ts';
import { nativeBackend as native } from '../backend/native.ts';
import { ShapeError } from '../errors.ts';
import {
  type Collectible,
  type ProcessGroup,
  type ReduceOp,
  type Span,
  checkCounts,
  dtypeBytesOf,
  equalCounts,
  toSpan,
} from './process-group.ts';

export class MpiProcessGroup implements ProcessGroup {
  readonly backend = 'mpi';
  readonly rank: number;
  readonly size: number;
  readonly localRank: number;
  readonly localSize: number;
  /** Scratch for allReduceNumbers (float64), grown on demand. */
  private scratch = 0;
  private scratchCount = 0;

  constructor() {
    const [rank, size, localRank, localSize] = mpi.init();
    this.rank = rank;
    this.size = size;
    this.localRank = localRank;
    this.localSize = localSize;
  }

  allReduce(x: Collectible, op: ReduceOp = 'sum'): void {
    const s = toSpan(x, 'allReduce');
    if (s.count === 0) return;
    mpi.allReduce(s.backend, s.handle, s.byteOffset, s.count, MPI_DTYPE[s.dtype], MPI_OP[op === 'avg' ? 'sum' : op]);
    if (op === 'avg') this.scale(s, 1 / this.size, 'allReduce');
  }

  reduceScatter(send: Collectible, recv: Collectible, opts: { op?: ReduceOp; counts?: number[] } = {}): void {
    const s = toSpan(send, 'reduceScatter');
    const r = toSpan(recv, 'reduceScatter');
    if (s.dtype !== r.dtype) throw new ShapeError(`reduceScatter: send is ${s.dtype} but recv is ${r.dtype}`);
    const counts = opts.counts ? checkCounts(opts.counts, this.size, 'reduceScatter') : new Array<number>(this.size).fill(r.count);
    const total = counts.reduce((a, b) => a + b, 0);
    const mine = counts[this.rank] as number;
    if (s.count < total) throw new ShapeError(`reduceScatter: send holds ${s.count} elements, the blocks need ${total}`);
    if (r.count < mine) throw new ShapeError(`reduceScatter: recv holds ${r.count} elements, this rank's block is ${mine}`);
    const op = opts.op ?? 'sum';
    mpi.reduceScatter(s.backend, s.handle, s.byteOffset, r.handle, r.byteOffset, counts, MPI_DTYPE[s.dtype], MPI_OP[op === 'avg' ? 'sum' : op]);
    if (op === 'avg') this.scale({ ...r, count: mine }, 1 / this.size, 'reduceScatter');
  }

  allGather(x: Collectible, counts?: number[]): void {
    const s = toSpan(x, 'allGather');
    const c = counts ? checkCounts(counts, this.size, 'allGather') : equalCounts(s.count, this.size, 'allGather');
    const total = c.reduce((a, b) => a + b, 0);
    if (s.count < total) throw new ShapeError(`allGather: buffer holds ${s.count} elements, the blocks need ${total}`);
    mpi.allGather(s.backend, s.handle, s.byteOffset, c, MPI_DTYPE[s.dtype]);
  }

  broadcast(x: Collectible, root = 0): void {
    const s = toSpan(x, 'broadcast');
    mpi.broadcast(s.backend, s.handle, s.byteOffset, s.count, MPI_DTYPE[s.dtype], root);
  }

  allReduceNumbers(values: readonly number[], op: 'sum' | 'max' | 'min' = 'sum'): number[] {
    if (values.length === 0) return [];
    if (this.scratchCount < values.length) {
      if (this.scratch !== 0) native.free(this.scratch);
      this.scratchCount = Math.max(values.length, 16);
      this.scratch = native.alloc(this.scratchCount * 8, true);
    }
    const data = Float64Array.from(values);
    native.write(this.scratch, 0, data);
    mpi.allReduce(native, this.scratch, 0, data.length, MPI_DTYPE.float64, MPI_OP[op]);
    native.read(this.scratch, 0, data);
    return Array.from(data);
  }

  barrier(): void {
    mpi.barrier();
  }

  abort(code: number): never {
    return mpi.abort(code);
  }

  private scale(s: Span, factor: number, op: string): void {
    if (s.count === 0) return;
    if (s.dtype === 'float32') {
      s.backend.unary(UNARY_OP.scale, s.handle, s.byteOffset, s.handle, s.byteOffset, s.count, factor);
    } else if (s.dtype === 'float64') {
      const data = new Float64Array(s.count);
      s.backend.read(s.handle, s.byteOffset, data);
      for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) * factor;
      s.backend.write(s.handle, s.byteOffset, data);
    } else {
      throw new ShapeError(`${op}: 'avg' needs float32 or float64, got ${s.dtype}`);
    }
  }
}

let handlersInstalled = false;
let agreedExitCode: number | null = null;

/**
 * Ends this process with `code` by agreement of every rank (a graceful stop decided through a collective,
 * its checkpoint written by all): at exit MPI is finalized as on success instead of aborting the job, so
 * every rank finishes cleanly and the launcher reports the code. Without MPI it only sets the exit code.
 */
export function exitTogether(code: number): void {
  agreedExitCode = code;
  process.exitCode = code;
}

/**
 * Makes a failure on this rank end the whole job: an uncaught error or rejection prints and calls MPI_Abort;
 * a non-zero exit (the CLI sets process.exitCode on a typed error) aborts too, since MPI_Finalize would wait
 * for ranks that are blocked in a collective with this one. A clean exit, or one every rank agreed on
 * (exitTogether), finalizes.
 */
export function installFailureHandlers(rank: number): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const die = (err: unknown): never => {
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`sftkit: rank ${rank}: ${text}\nsftkit: rank ${rank}: aborting every rank\n`);
    return mpi.abort(1);
  };
  process.on('uncaughtException', die);
  process.on('unhandledRejection', die);
  process.on('exit', (code) => {
    if (code !== 0 && code !== agreedExitCode) {
      process.stderr.write(`sftkit: rank ${rank} exits with code ${code}; aborting every rank\n`);
      mpi.abort(code);
    }
    mpi.finalize();
  });
}
