// Learning-rate schedules with linear warm-up, as HF's get_*_schedule_with_warmup define them
// (cosine and linear decay to lr_end, MindFormers' CosineWithWarmUpLR), indexed by optimizer step from 0.
//
// Warm-up rule: optimizer step s < W (0-based, W warm-up steps) trains at lr·(s+1)/(W+1). HF's LambdaLR
// gives s/W, so its first step trains at lr 0 (a wasted step; with W = 1 the only warm-up step does nothing).
// We move the ramp one step later at both ends (nanoGPT's rule): the first step trains at lr/(W+1), the ramp
// rises strictly, and step W reaches the peak lr exactly where HF's does; decay from step W on is HF's.
import { ConfigError } from '../errors.ts';

export interface LrSchedule {
  type: 'constant' | 'linear' | 'cosine';
  warmupSteps: number;
  totalSteps: number;
  lr: number;
  lrEnd: number;
}

/** Warm-up steps from the config: warmup_steps when > 0, else ceil(warmup_ratio × total) (HF). */
export function warmupStepsOf(cfg: { warmup_steps: number; warmup_ratio: number }, totalSteps: number): number {
  return cfg.warmup_steps > 0 ? cfg.warmup_steps : Math.ceil(cfg.warmup_ratio * totalSteps);
}

/** The learning rate used by optimizer step `step` (0-based). */
export function learningRate(s: LrSchedule, step: number): number {
  if (s.totalSteps <= 0) throw new ConfigError('lr_schedule: the run has no optimizer steps');
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / (s.warmupSteps + 1);
  if (s.type === 'constant') return s.lr;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps));
  if (s.type === 'linear') return s.lrEnd + (s.lr - s.lrEnd) * (1 - progress);
  return s.lrEnd + (s.lr - s.lrEnd) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
