// The types of LoRA adapters attached to a ParameterSet (nn/lora.ts attaches them, nn/linear.ts reads them),
// apart so that parameters.ts and lora.ts do not import each other.
import type { Rng } from '../tensor/index.ts';

export interface LoraOptions {
  rank: number;
  alpha: number;
  dropout: number;
  /** Names (PEFT's suffix match) or one regular expression (full match). */
  target_modules: string[] | string;
  use_rslora: boolean;
  /**
   * PEFT's per-module ranks and alphas (adapters PEFT wrote): the first key, in order, that matches the end of
   * a module's name after a dot (PEFT's `(.*\.)?(key)$`, a regular expression) overrides rank or alpha there.
   */
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
  /** PEFT's exclude_modules, layers_to_transform and layers_pattern (nn/lora.ts's TargetFilter). */
  exclude_modules?: string[] | string;
  layers_to_transform?: number[] | number;
  layers_pattern?: string[] | string;
  /** false for an adapter read from adapter_config.json: target names that match nothing are let be, as in PEFT. */
  every_target_name?: boolean;
}

/** One adapted module: its scale, dropout and how its base weight is laid out. */
export interface LoraModule {
  module: string;
  rank: number;
  scale: number;
  dropout: number;
  inFeatures: number;
  outFeatures: number;
  /** GPT-2's Conv1D stores W as (in, out): PEFT's fan_in_fan_out. */
  fanInFanOut: boolean;
}

/** What a ParameterSet carries once adapters are attached: read by linear() for every module it adapts. */
export interface LoraState {
  options: LoraOptions;
  modules: Map<string, LoraModule>;
  /** Draws dropout masks (seeded by the run); dropout applies only while gradients are recorded. */
  rng: Rng;
}
