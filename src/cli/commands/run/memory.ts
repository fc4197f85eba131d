// `sftkit run`'s memory check: the estimate of the run against the memory available, before the model loads
// (from config.json and the run config) and again after (from the weights as loaded); a run that does not fit
// is refused, unless --force, with the cheapest change of settings that would fit and its estimate.
import { freemem } from 'node:os';
import { ConfigError } from '../../../errors.ts';
import type { ModelConfig } from '../../../models/config.ts';
import type { RunConfig } from '../../../train/config.ts';
import { cheapestFit, memorySettingsOf, planTrainingMemory } from '../../../train/memory-plan.ts';

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;

/** The refusal of a run needing `bytes` with `available` free: what would fit instead, or that nothing would. */
export function tooBigError(bytes: number, available: number, config: ModelConfig, cfg: RunConfig, seqLength: number, worldSize: number): ConfigError {
  const fit = cheapestFit(config, memorySettingsOf(cfg, seqLength, worldSize), available);
  const hint = fit
    ? `${fit.change} (about ${gib(fit.estimate.total)}), or pass --force to try anyway`
    : `no setting fits: even LoRA over an NF4 base at batch 1 with recompute needs more; use a machine with more memory${worldSize > 1 ? '' : ' or several ranks (sftkit launch) with parallel_config.zero_stage 3'}, a shorter seq_length, or pass --force`;
  return new ConfigError(`training needs about ${gib(bytes)}, more than the ${gib(available)} available`, { hint });
}

/**
 * Before loading: refuses a run whose planned estimate exceeds the free memory (a model too large to load would
 * otherwise be killed by the kernel halfway through). A PEFT adapter given by lora.adapter is checked after
 * loading instead (its rank is in its own files).
 */
export function checkPlannedMemory(cfg: RunConfig, config: ModelConfig, seqLength: number, worldSize: number): void {
  if (cfg.lora.adapter !== '') return;
  const available = freemem();
  const estimate = planTrainingMemory(config, memorySettingsOf(cfg, seqLength, worldSize));
  if (estimate.total > available) throw tooBigError(estimate.total, available, config, cfg, seqLength, worldSize);
}
