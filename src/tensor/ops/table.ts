// The backward-rule table keyed by op name: backward (backward.ts) calls BACKWARD_RULES[node.op] for every
// recorded node. Complete by type: a missing or extra entry fails to compile.
import type { OpName } from '../op-names.ts';
import * as elementwise from './elementwise.ts';
import * as frozenLinear from './frozen-linear.ts';
import * as fused from './fused.ts';
import * as loraLinear from './lora-linear.ts';
import * as matmul from './matmul.ts';
import * as recompute from './recompute.ts';
import * as reduce from './reduce.ts';
import type { Rule } from './util.ts';
import * as views from './views.ts';

// Each op file types its rules by the ctx its forward records; the table erases that to one signature.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const BACKWARD_RULES: { readonly [K in OpName]: Rule<any> } = {
  ...elementwise.rules,
  ...reduce.rules,
  ...matmul.rules,
  ...frozenLinear.rules,
  ...loraLinear.rules,
  ...views.rules,
  ...fused.rules,
  ...recompute.rules,
};
