// Argument checks of the reference backend: the same rules and messages as the addon's glue (native/glue/args.h),
// so a bad call fails the same way on either backend, as a ShapeError naming the op.
import { ShapeError } from '../../errors.ts';

/** Largest size accepted for one dimension (the glue's `dim`). */
const MAX_DIM = 2 ** 40;

/** Throws `op: msg` as a ShapeError (the addon throws the same message as a plain Error with code ESFTKIT_NATIVE). */
export function fail(op: string, msg: string): never {
  throw new ShapeError(`${op}: ${msg}`, { where: op });
}

/** An integer argument (the glue's `i64`). */
export function int(op: string, name: string, v: number): number {
  if (typeof v !== 'number') fail(op, `argument '${name}' must be a number`);
  if (!Number.isInteger(v)) fail(op, `argument '${name}' must be an integer`);
  return v;
}

/** A size in [0, 2^40] (the glue's `dim`). */
export function dim(op: string, name: string, v: number): number {
  int(op, name, v);
  if (v < 0 || v > MAX_DIM) fail(op, `size '${name}' out of range: ${v}`);
  return v;
}

/** A float argument as the kernels see it: the glue reads a double and casts it to float. */
export function f32arg(op: string, name: string, v: number): number {
  if (typeof v !== 'number') fail(op, `argument '${name}' must be a number`);
  return Math.fround(v);
}

/** A float argument that must be finite (the nn glue's `finite`). */
export function finiteArg(op: string, name: string, v: number): number {
  if (typeof v !== 'number') fail(op, `argument '${name}' must be a number`);
  if (!Number.isFinite(v)) fail(op, `argument '${name}' must be finite`);
  return Math.fround(v);
}

export function flag(op: string, name: string, v: boolean): boolean {
  if (typeof v !== 'boolean') fail(op, `argument '${name}' must be a boolean`);
  return v;
}

/** "[a, b, c]", as the glue prints shapes and strides. */
export function listStr(v: readonly number[]): string {
  return `[${v.join(', ')}]`;
}

/** "name (a, b, c)": a tensor named with its shape, for buffer errors (the nn glue's `tensor`). */
export function tensorName(name: string, dims: readonly number[]): string {
  return `${name} (${dims.join(', ')})`;
}

/** A shape or element-stride list: at most 8 non-negative integers (the glue's `dims_arg`). */
export function dimsArg(op: string, name: string, v: readonly number[]): number[] {
  if (!Array.isArray(v)) fail(op, `argument '${name}' must be an array`);
  if (v.length > 8) fail(op, `'${name}' has ${v.length} dims; at most 8 are supported`);
  const out: number[] = [];
  for (let j = 0; j < v.length; j++) {
    const d = v[j] as number;
    if (typeof d !== 'number' || !Number.isInteger(d) || d > MAX_DIM) fail(op, `'${name}' must hold integers, got entry ${j} = ${String(d)}`);
    if (d < 0) fail(op, `'${name}' has a negative entry ${d} (negative strides are not supported)`);
    out.push(d);
  }
  return out;
}

/** Elements a strided view spans: 1 + sum((shape[i] - 1) * strides[i]), 0 when any dim is 0. */
export function stridedExtent(shape: readonly number[], strides: readonly number[]): number {
  let last = 0;
  for (let i = 0; i < shape.length; i++) {
    const n = shape[i] as number;
    if (n === 0) return 0;
    last += (n - 1) * (strides[i] as number);
  }
  return last + 1;
}

/** Product of sizes; fails instead of leaving exact integer range. */
export function prod(op: string, dims: readonly number[], limit = 2 ** 50): number {
  let p = 1;
  for (const d of dims) {
    p *= d;
    if (p > limit) fail(op, 'shape too large');
  }
  return p;
}
