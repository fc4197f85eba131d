// Distributed training over MPI: process groups, bucketed gradient all-reduce, ZeRO-1 optimizer sharding, ZeRO-2 gradient sharding, ZeRO-3 parameter sharding.
export type { Collectible, CollectiveDType, ProcessGroup, ReduceOp, Span } from './process-group.ts';
export { SingleProcessGroup } from './single.ts';
export { MpiProcessGroup, exitTogether, installFailureHandlers } from './mpi.ts';
export { INSTALL_MPI_HINT, initProcessGroup, launchedWorldSize, mpiAvailable } from './init.ts';
export { DEFAULT_BUCKET_BYTES, GradientBuckets, allReduceGradients, planBuckets } from './gradients.ts';
export type { Bucket, GradientReduceOptions } from './gradients.ts';
export {
  ShardedAdamW,
  allGatherParameters,
  reduceScatterGradients,
  shardCounts,
  shardRange,
  tensorsInShard,
} from './zero.ts';
export type { ShardRange, ShardedAdamWOptions } from './zero.ts';
export { ShardedGradients } from './zero2.ts';
export { ShardedParameters, groupKey, planGroups } from './zero3.ts';
export type { ParamGroup, ShardedParametersOptions } from './zero3.ts';
export type { ShardedGradientsOptions, ShardedValues } from './zero2.ts';
