// sftkit's public library API. The CLI (src/cli) is a thin user of it.
export * from './tensor/index.ts';
export { native as backend } from './backend/binding.ts';
export type { MemStats } from './backend/binding.ts';
export { ParameterSet } from './nn/parameters.ts';
export type { ParamSpec } from './nn/parameters.ts';
export { linear } from './nn/linear.ts';
export { AdamW, globalGradNorm, clipScale } from './train/adamw.ts';
export type { AdamWOptions } from './train/adamw.ts';
export { SftkitError, ShapeError, FormatError, ConfigError, DataError } from './errors.ts';
