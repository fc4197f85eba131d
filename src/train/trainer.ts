// The training loop, top to bottom: setup (schedule, freezing, optimizer, resume), then per step a global
// batch whose trained tokens normalise the loss, each micro-batch's forward/loss/backward (loss-step.ts),
// clip, AdamW, log, evaluate, checkpoint. Resume restores weights, moments, step and data position exactly,
// so the losses continue bit for bit; a stop request (a signal) ends the run at the next step boundary, the
// same one on every rank, with a checkpoint. Around the loop: TensorBoard scalars (callbacks.tensorboard), the
// best checkpoint and early stopping by an eval metric (callbacks.early_stopping), and a report hook after
// every save (`sftkit run` writes report.md and loss_curve.png there).
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, SftkitError } from '../errors.ts';
import type { BaseModelRef } from '../formats/checkpoint-dir.ts';
import { TfEventsWriter } from '../formats/tfevents.ts';
import { type CausalLM, noDecay } from '../models/model.ts';
import * as T from '../tensor/index.ts';
import { Rng } from '../tensor/index.ts';
import type { MetricName } from '../eval/metrics.ts';
import { PerplexityAccumulator } from '../eval/perplexity.ts';
import { type ShiftedRows, shiftRows } from '../data/shift.ts';
import { type ProcessGroup, SingleProcessGroup } from '../distributed/index.ts';
import { clipScale } from './adamw.ts';
import type { BatchSource } from './batches.ts';
import { type LoadedCheckpoint, checkpointName, saveCheckpoint, sweepCheckpointRoot } from './checkpoint.ts';
import type { RunConfig } from './config.ts';
import { frozenSet } from './freeze.ts';
import { lossStep } from './loss-step.ts';
import { type LrSchedule, learningRate, warmupStepsOf } from './lr-schedule.ts';
import { ReplicatedAdamW, type TrainOptimizer, ZeroAdamW } from './optimizer.ts';

/** Training stopped on a non-finite loss or gradient. */
export class TrainingError extends SftkitError {}

export interface StepInfo {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Trained (label) tokens in this step's global batch. */
  trainedTokens: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
  etaSeconds: number;
}

export interface EvalResult {
  loss: number;
  perplexity: number;
  tokens: number;
  /** Generation metrics asked for in callbacks.eval.metrics (during training). */
  metrics?: Record<string, number>;
}

export interface TrainerEvents {
  step?(info: StepInfo): void;
  eval?(step: number, result: EvalResult): void;
  checkpoint?(dir: string): void;
  warn?(message: string): void;
  /** Housekeeping worth a log line (leftovers of an interrupted run removed at start). */
  note?(message: string): void;
}

/** Where a run stands after a save: what the report hook gets. */
export interface RunProgress {
  step: number;
  totalSteps: number;
  /** running: more steps follow; finished: the last step; stopped: a stop request or early stopping ended it. */
  status: 'running' | 'finished' | 'stopped';
  stopReason: string | null;
  lastCheckpoint: string | null;
  best: BestCheckpoint | null;
}

/** The best checkpoint by callbacks.early_stopping's metric. */
export interface BestCheckpoint {
  metric: string;
  value: number;
  step: number;
  checkpoint: string | null;
}

export interface TrainerOptions {
  config: RunConfig;
  model: CausalLM;
  train: BatchSource;
  /** Evaluation batches (epoch 0 is read in order). */
  evalSource?: BatchSource | null;
  /** Where tokenizer and generation files for checkpoints come from. */
  assetsDir: string | null;
  /**
   * Generation metrics (em, f1, rouge_l, bleu4) of the model at each eval step, when callbacks.eval.metrics
   * asks for them (`sftkit run` makes it from the eval records and the tokenizer). Without it such a request
   * is refused before training starts.
   */
  generationMetrics?: ((metrics: MetricName[]) => Record<string, number>) | null;
  /** A training checkpoint to continue from (its weights are already in `model`). */
  resume?: LoadedCheckpoint | null;
  /**
   * The folder a LoRA run's frozen base was loaded from (and the name it was given): the run's checkpoints then
   * hold only the adapter and refer to it. Without it a LoRA checkpoint stores the base's weights as well.
   */
  base?: BaseModelRef | null;
  /** Data-parallel ranks (default: this process alone). `train` must be this rank's shard of the batches. */
  pg?: ProcessGroup;
  /**
   * At zero_stage 3, gather the whole weights onto every rank when training ends (default true), so `model`
   * is whole afterwards. `sftkit run` passes false: the checkpoint holds them, and the whole model need not fit
   * one rank.
   */
  wholeModelAfter?: boolean;
  events?: TrainerEvents;
  /** Called on rank 0 after every checkpoint save (the last one included); a failure is a warning, not a stop. */
  report?: ((progress: RunProgress) => Promise<void>) | null;
}

export interface TrainSummary {
  steps: number;
  lastLoss: number;
  losses: number[];
  stoppedEarly: boolean;
  /** Why the run stopped early (what requestStop was given), or null. */
  stopReason: string | null;
  /** The stop code agreed by every rank (the largest one requested), or null when the run was not stopped. */
  stopCode: number | null;
  lastCheckpoint: string | null;
  /** Why early stopping ended the run (it then saved and returns normally), or null. */
  earlyStopped: string | null;
  /** The best checkpoint by callbacks.early_stopping's metric, when that is enabled and an eval ran. */
  best: BestCheckpoint | null;
}

function countTrained(targets: Int32Array): number {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== -100) n++;
  return n;
}

export { frozenSet } from './freeze.ts';

/** Mean token loss over every batch of epoch 0 of `source`, without gradients and without full logits. */
export function evaluateLoss(model: CausalLM, source: BatchSource): EvalResult {
  const acc = new PerplexityAccumulator(model, { seqLength: source.rowLength - 1 });
  for (let i = 0; i < source.batchesPerEpoch; i++) acc.add(source.batch(0, i));
  return acc.result();
}

/** The generation metrics (everything but perplexity) callbacks.eval.metrics asks for. */
function generationMetricsOf(cfg: RunConfig): MetricName[] {
  return cfg.callbacks.eval.metrics.filter((m): m is MetricName => m !== 'perplexity');
}

/** callbacks.early_stopping's state: the best eval so far and the evals since (saved in trainer_state.json). */
interface EarlyState {
  metric: string;
  mode: 'min' | 'max';
  bestValue: number | null;
  bestStep: number;
  bestCheckpoint: string | null;
  badEvals: number;
  /** The last eval improved: the next save becomes the best checkpoint. */
  pending: boolean;
  /** Set when patience ran out: the run saves and ends. */
  stop: string | null;
}

/** The value of `metric` in an eval result (eval_loss, perplexity or a generation metric). */
function metricValue(metric: string, r: EvalResult): number | undefined {
  if (metric === 'eval_loss') return r.loss;
  if (metric === 'perplexity') return r.perplexity;
  return r.metrics?.[metric];
}

/** What setup() prepares for the loop: the schedule, the optimizer and where the run stands. */
interface RunState {
  stepsPerEpoch: number;
  totalSteps: number;
  accum: number;
  schedule: LrSchedule;
  optimizer: TrainOptimizer;
  pg: ProcessGroup;
  rng: Rng;
  lead: boolean;
  metricsPath: string;
  ckRoot: string;
  step: number;
  stepsAtStart: number;
  started: number;
  losses: number[];
  lastCheckpoint: string | null;
  savedStep: number;
  /** TensorBoard writer (rank 0, callbacks.tensorboard.enabled). */
  tb: TfEventsWriter | null;
  early: EarlyState | null;
}

/** One optimizer step's outcome, before logging. */
interface StepResult {
  loss: number;
  lr: number;
  gradNorm: number;
  trainedTokens: number;
  seconds: number;
}

export class Trainer {
  private stopReason: string | null = null;
  private stopCode = 0;
  readonly opts: TrainerOptions;

  constructor(opts: TrainerOptions) {
    this.opts = opts;
  }

  /**
   * Finish the current step, save a checkpoint, and stop (SIGINT, SIGTERM, SIGUSR1). With several ranks a
   * request on any one of them stops all of them after the same step. Safe to call before run() starts.
   * `code` (a positive number, e.g. the exit code the CLI will use) is agreed by all ranks: the largest wins.
   */
  requestStop(reason = 'stop requested', code = 1): void {
    if (this.stopReason !== null) return;
    this.stopReason = reason;
    this.stopCode = Math.max(1, code);
  }

  /** The stop code agreed by every rank, 0 for none; a collective, so every rank calls it at the same point. */
  private stopAgreed(pg: ProcessGroup): number {
    if (pg.size === 1) return this.stopCode;
    return pg.allReduceNumbers([this.stopCode], 'max')[0] as number;
  }

  async run(): Promise<TrainSummary> {
    const run = this.setup();
    try {
      const summary = await this.loop(run);
      // Every rank gets here together (the last step, or an agreed stop): ZeRO-3 gathers the full weights back.
      if (this.opts.wholeModelAfter !== false) run.optimizer.finish();
      return summary;
    } finally {
      run.optimizer.release();
      run.tb?.close();
    }
  }

  private async loop(run: RunState): Promise<TrainSummary> {
    // A stop asked for while the model was loading: nothing new to save.
    const before = this.stopAgreed(run.pg);
    if (before > 0) return this.stopped(run, NaN, before);
    while (run.step < run.totalSteps) {
      const epoch = Math.floor(run.step / run.stepsPerEpoch);
      const result = this.trainStep(run, epoch);
      run.step += 1;
      run.losses.push(result.loss);
      this.logStep(run, epoch, result);
      if (this.evalDue(run)) this.evaluate(run);
      const ck = this.opts.config.callbacks.checkpoint;
      const early = run.early;
      // An improved eval is saved at once (it becomes the best checkpoint); so is the step early stopping ends at.
      if (run.step % ck.save_checkpoint_steps === 0 || run.step === run.totalSteps || early?.pending || early?.stop) await this.save(run);
      if (early?.stop) {
        this.opts.events?.note?.(`early stopping: ${early.stop}`);
        return { ...this.summary(run, result.loss), earlyStopped: early.stop };
      }
      // Let signal handlers run between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
      // A stop on any rank stops all of them after this same step, so they all save the same checkpoint.
      const stop = run.step < run.totalSteps ? this.stopAgreed(run.pg) : 0;
      if (stop > 0) {
        // Saved at this step already: its report said "running", so it is written again.
        if (run.savedStep !== run.step) await this.save(run, 'stopped');
        else await this.report(run, 'stopped');
        return this.stopped(run, result.loss, stop);
      }
    }
    return this.summary(run, run.losses[run.losses.length - 1] ?? NaN);
  }

  private summary(run: RunState, lastLoss: number): TrainSummary {
    return { steps: run.step, lastLoss, losses: run.losses, stoppedEarly: false, stopReason: null, stopCode: null, lastCheckpoint: run.lastCheckpoint, earlyStopped: null, best: bestOf(run) };
  }

  // --- setup

  /** Checks the config against the data and ranks, freezes, builds the optimizer, restores a resumed run. */
  private setup(): RunState {
    const { config: cfg, model, train, events } = this.opts;
    const rc = cfg.runner_config;
    const accum = rc.gradient_accumulation_steps;
    const stepsPerEpoch = Math.floor(train.batchesPerEpoch / accum);
    if (stepsPerEpoch < 1) {
      throw new ConfigError(`the training data has ${train.batchesPerEpoch} batches of ${train.batchSize}, fewer than one optimizer step (gradient_accumulation_steps ${accum})`, {
        where: 'train_dataset',
      });
    }
    const evalCfg = cfg.callbacks.eval;
    if (evalCfg.do_eval && generationMetricsOf(cfg).length > 0 && !this.opts.generationMetrics) {
      // Asked for and impossible here (no tokenizer or eval records): refused, never skipped silently.
      throw new ConfigError(`callbacks.eval.metrics ${generationMetricsOf(cfg).join(', ')}: generation metrics during training need the eval records and a tokenizer`, {
        where: 'callbacks.eval.metrics',
        hint: 'set eval_dataset.dataset_dir and a tokenizer, or keep metrics: [perplexity] and score them after training with sftkit run --run_mode eval',
      });
    }
    const early = this.earlyState();
    const totalSteps = rc.max_steps > 0 ? rc.max_steps : rc.epochs * stepsPerEpoch;
    const schedule: LrSchedule = {
      type: cfg.lr_schedule.type,
      warmupSteps: warmupStepsOf(cfg.lr_schedule, totalSteps),
      totalSteps,
      lr: cfg.optimizer.learning_rate,
      lrEnd: cfg.lr_schedule.lr_end,
    };
    this.freeze();
    const pg = this.opts.pg ?? new SingleProcessGroup();
    const dp = cfg.parallel_config.data_parallel;
    if (dp !== 'auto' && dp !== pg.size) {
      throw new ConfigError(`parallel_config.data_parallel is ${dp}, but the run has ${pg.size} process(es)`, {
        where: 'parallel_config.data_parallel',
        hint: `set data_parallel: auto, or launch ${dp} workers (sftkit launch --worker_num ${dp})`,
      });
    }
    const adamw = {
      lr: cfg.optimizer.learning_rate,
      beta1: cfg.optimizer.beta1,
      beta2: cfg.optimizer.beta2,
      eps: cfg.optimizer.eps,
      weightDecay: cfg.optimizer.weight_decay,
      noDecay,
    };
    // Over the trainable weights only: frozen ones have no gradient and no moments.
    const stage = cfg.parallel_config.zero_stage;
    const bucketBytes = cfg.parallel_config.bucket_mb * 2 ** 20;
    const optimizer: TrainOptimizer = stage >= 1 ? new ZeroAdamW(model.params, pg, adamw, stage as 1 | 2 | 3, bucketBytes) : new ReplicatedAdamW(model.params, pg, adamw, bucketBytes);
    const rng = new Rng(cfg.seed);
    let step = 0;
    const resume = this.opts.resume;
    if (resume) {
      optimizer.load(join(resume.dir, 'optimizer'));
      step = resume.state.step;
      if (resume.state.lr_schedule.total_steps !== totalSteps) {
        events?.warn?.(`resuming a run planned for ${resume.state.lr_schedule.total_steps} steps with ${totalSteps} steps: the LR schedule changes`);
      }
      const mine = resume.ranks.find((x) => x.rank === pg.rank) ?? resume.ranks[0];
      if (mine) rng.setState(mine.rng);
      // LoRA dropout draws its masks from the adapters' own RNG: where it stood, so the masks go on as before.
      if (mine?.lora_rng && model.params.lora) model.params.lora.rng.setState(mine.lora_rng);
      const saved = resume.state.early_stopping;
      if (early && saved) {
        early.bestValue = saved.best_value;
        early.bestStep = saved.best_step;
        early.bestCheckpoint = saved.best_checkpoint;
        early.badEvals = saved.bad_evals;
      }
    }

    const lead = pg.rank === 0;
    const outDir = cfg.output_dir;
    if (lead) mkdirSync(outDir, { recursive: true });
    const ckRoot = join(outDir, 'checkpoint');
    // What an interrupted run left behind goes before this run saves anything (only rank 0 touches the root).
    if (lead) sweepCheckpointRoot(ckRoot, { keep: resume?.name ?? null, log: (m) => events?.note?.(m) });
    const tbCfg = cfg.callbacks.tensorboard;
    const tb = lead && tbCfg.enabled ? new TfEventsWriter(tbCfg.log_dir !== '' ? tbCfg.log_dir : join(outDir, 'tensorboard')) : null;
    return {
      stepsPerEpoch, totalSteps, accum, schedule, optimizer, pg, rng, lead,
      metricsPath: join(outDir, 'metrics.jsonl'),
      ckRoot,
      step,
      stepsAtStart: step,
      started: performance.now(),
      losses: [],
      lastCheckpoint: null,
      savedStep: resume?.state.step ?? -1,
      tb,
      early,
    };
  }

  /** callbacks.early_stopping checked against the eval settings; null when it is off. */
  private earlyState(): EarlyState | null {
    const cfg = this.opts.config;
    const es = cfg.callbacks.early_stopping;
    if (!es.enabled) return null;
    if (!cfg.callbacks.eval.do_eval || !this.opts.evalSource) {
      throw new ConfigError('callbacks.early_stopping needs evaluation during training', {
        where: 'callbacks.early_stopping.enabled',
        hint: 'set callbacks.eval.do_eval: true and eval_dataset.dataset_dir',
      });
    }
    if (es.metric !== 'eval_loss' && es.metric !== 'perplexity' && !cfg.callbacks.eval.metrics.includes(es.metric)) {
      throw new ConfigError(`callbacks.early_stopping.metric ${es.metric} is not computed at eval: callbacks.eval.metrics is [${cfg.callbacks.eval.metrics.join(', ')}]`, {
        where: 'callbacks.early_stopping.metric',
        hint: `add ${es.metric} to callbacks.eval.metrics, or use eval_loss`,
      });
    }
    const mode = es.mode ?? (es.metric === 'eval_loss' || es.metric === 'perplexity' ? 'min' : 'max');
    return { metric: es.metric, mode, bestValue: null, bestStep: 0, bestCheckpoint: null, badEvals: 0, pending: false, stop: null };
  }

  /**
   * `freeze` moves the weights it names to the model's frozen store (a model loaded with weightOptionsOf
   * already has them there). A model whose frozen weights the config does not name is refused: its
   * optimizer state would not match the config's.
   */
  private freeze(): void {
    const { config: cfg, model } = this.opts;
    if (model.params.lora) return; // LoRA froze the whole base already (nn/lora.ts)
    const frozen = frozenSet(model.params.names, cfg.freeze);
    const extra = model.params.frozen.names.filter((n) => !frozen.has(n));
    if (extra.length > 0) {
      throw new ConfigError(`the model holds ${extra.length} frozen weight(s) the config's freeze does not name (${extra[0]}${extra.length > 1 ? ', …' : ''})`, {
        where: 'freeze',
        hint: 'load the model with the same freeze settings the trainer gets',
      });
    }
    model.params.freeze((n) => frozen.has(n));
  }

  // --- one training step

  /** Gathers the global batch, runs its micro-batches forward and backward, reduces, clips and updates. */
  private trainStep(run: RunState, epoch: number): StepResult {
    const { config: cfg, model, train } = this.opts;
    const t0 = performance.now();
    const inEpoch = run.step % run.stepsPerEpoch;
    // The global batch: its trained-token count normalises every micro-batch's loss.
    const micro: ShiftedRows[] = Array.from({ length: run.accum }, (_, j) => shiftRows(train.batch(epoch, inEpoch * run.accum + j), train.rowLength));
    const trainedTokens = run.pg.allReduceNumbers([micro.reduce((n, m) => n + countTrained(m.targets), 0)])[0] as number;
    run.optimizer.zeroGrad();
    let lossTotal = 0;
    for (const m of micro) {
      lossTotal += lossStep(model, m, { seqLength: train.rowLength - 1, normaliser: trainedTokens, dtype: cfg.model.dtype, recompute: cfg.model.recompute });
      run.optimizer.microBatchDone();
    }
    const loss = trainedTokens > 0 ? (run.pg.allReduceNumbers([lossTotal])[0] as number) / trainedTokens : 0;
    run.optimizer.reduceGradients();
    const gradNorm = run.optimizer.gradNorm();
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new TrainingError(`step ${run.step + 1}: ${!Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${gradNorm}`}; stopped before updating the weights`, {
        hint: run.lastCheckpoint ? `the last good checkpoint is ${run.lastCheckpoint}` : 'lower the learning rate or check the data',
      });
    }
    const lr = learningRate(run.schedule, run.step);
    if (trainedTokens > 0) run.optimizer.update(lr, clipScale(gradNorm, cfg.runner_config.clip_grad_norm), () => false);
    return { loss, lr, gradNorm, trainedTokens, seconds: (performance.now() - t0) / 1000 };
  }

  /** metrics.jsonl and the step event (rank 0), after run.step was advanced. */
  private logStep(run: RunState, epoch: number, r: StepResult): void {
    const { config: cfg, train, events } = this.opts;
    const step = run.step;
    const elapsed = (performance.now() - run.started) / 1000;
    const info: StepInfo = {
      step,
      totalSteps: run.totalSteps,
      epoch: epoch + 1,
      loss: r.loss,
      lr: r.lr,
      gradNorm: r.gradNorm,
      trainedTokens: r.trainedTokens,
      tokensPerSecond: (run.accum * train.batchSize * (train.rowLength - 1) * run.pg.size) / r.seconds,
      elapsedSeconds: elapsed,
      etaSeconds: (elapsed / (step - run.stepsAtStart)) * (run.totalSteps - step),
    };
    if (!run.lead) return;
    if (step % cfg.callbacks.loss_monitor.log_every === 0 || step === run.totalSteps) {
      const line = { type: 'train', step, total_steps: run.totalSteps, epoch: epoch + 1, loss: r.loss, lr: r.lr, grad_norm: r.gradNorm, trained_tokens: r.trainedTokens, tokens_per_s: info.tokensPerSecond };
      appendFileSync(run.metricsPath, `${JSON.stringify(line)}\n`);
      run.tb?.scalars({ 'train/loss': r.loss, 'train/lr': r.lr, 'train/grad_norm': r.gradNorm, 'train/tokens_per_s': info.tokensPerSecond }, step);
    }
    events?.step?.(info);
  }

  // --- evaluation

  private evalDue(run: RunState): boolean {
    const evalCfg = this.opts.config.callbacks.eval;
    return evalCfg.do_eval && this.opts.evalSource != null && (run.step % evalCfg.eval_steps === 0 || run.step === run.totalSteps);
  }

  /** Eval loss and perplexity: every rank evaluates the whole eval set (the replicas are equal); rank 0 reports. */
  private evaluate(run: RunState): void {
    const { config: cfg, model, events } = this.opts;
    const source = this.opts.evalSource as BatchSource;
    const result: EvalResult = T.autocast(cfg.model.dtype, () => evaluateLoss(model, source));
    const generation = generationMetricsOf(cfg);
    if (generation.length > 0 && this.opts.generationMetrics) {
      const score = this.opts.generationMetrics;
      result.metrics = T.autocast(cfg.model.dtype, () => score(generation));
    }
    if (run.lead) {
      appendFileSync(run.metricsPath, `${JSON.stringify({ type: 'eval', step: run.step, ...result })}\n`);
      const scalars: Record<string, number> = { 'eval/loss': result.loss, 'eval/perplexity': result.perplexity };
      for (const [k, v] of Object.entries(result.metrics ?? {})) scalars[`eval/${k}`] = v;
      run.tb?.scalars(scalars, run.step);
      events?.eval?.(run.step, result);
    }
    if (run.early) this.judge(run, run.early, result);
  }

  /** Early stopping's verdict on an eval (the same on every rank: every rank evaluates the same replica). */
  private judge(run: RunState, early: EarlyState, result: EvalResult): void {
    const value = metricValue(early.metric, result);
    if (value === undefined || !Number.isFinite(value)) {
      this.opts.events?.warn?.(`early stopping: eval at step ${run.step} gave no finite ${early.metric}; counted as no improvement`);
    }
    const delta = this.opts.config.callbacks.early_stopping.min_delta;
    const better =
      value !== undefined && Number.isFinite(value) && (early.bestValue === null || (early.mode === 'min' ? value < early.bestValue - delta : value > early.bestValue + delta));
    if (better) {
      early.bestValue = value;
      early.bestStep = run.step;
      early.badEvals = 0;
      early.pending = true;
      return;
    }
    early.badEvals += 1;
    const patience = this.opts.config.callbacks.early_stopping.patience;
    if (patience > 0 && early.badEvals >= patience && run.step < run.totalSteps) {
      early.stop = `${early.metric} did not improve on ${early.bestValue} (step ${early.bestStep}) by more than ${delta} in ${early.badEvals} evals; stopped after step ${run.step}`;
    }
  }

  // --- checkpoints

  /** Saves the checkpoint of run.step (weights, this rank's optimizer part and RNG/data position). */
  private async save(run: RunState, status?: RunProgress['status']): Promise<void> {
    const { config: cfg, model, train, events } = this.opts;
    const { step, schedule, pg, early } = run;
    const epoch = Math.floor((step - 1) / run.stepsPerEpoch);
    const ck = cfg.callbacks.checkpoint;
    const name = checkpointName(ck.prefix, epoch + 1, step);
    if (early?.pending) {
      early.bestCheckpoint = name;
      early.pending = false;
    }
    run.lastCheckpoint = await saveCheckpoint({
      root: run.ckRoot,
      name,
      model,
      optimizer: run.optimizer,
      state: {
        epoch,
        step,
        consumed_samples: step * run.accum * train.batchSize * pg.size,
        lr_schedule: { type: schedule.type, total_steps: run.totalSteps, warmup_steps: schedule.warmupSteps, lr: schedule.lr, lr_end: schedule.lrEnd },
        loss_scale: 1,
        world_size: pg.size,
        config: cfg,
        ...(early ? { early_stopping: { best_value: early.bestValue, best_step: early.bestStep, best_checkpoint: early.bestCheckpoint, bad_evals: early.badEvals } } : {}),
      },
      rank: {
        rank: pg.rank,
        rng: run.rng.getState(),
        ...(model.params.lora ? { lora_rng: model.params.lora.rng.getState() } : {}),
        loader: { epoch: Math.floor(step / run.stepsPerEpoch), batch: (step % run.stepsPerEpoch) * run.accum },
      },
      assetsDir: this.opts.assetsDir,
      keepMax: ck.keep_checkpoint_max,
      pg,
      best: early?.bestCheckpoint ?? null,
      base: this.opts.base ?? null,
    });
    run.savedStep = step;
    if (!run.lead) return;
    events?.checkpoint?.(run.lastCheckpoint);
    run.tb?.flush();
    await this.report(run, status);
  }

  /** The report hook (rank 0) with where the run stands; a failure is a warning. */
  private async report(run: RunState, status?: RunProgress['status']): Promise<void> {
    const report = this.opts.report;
    if (!run.lead || !report) return;
    const early = run.early;
    const progress: RunProgress = {
      step: run.step,
      totalSteps: run.totalSteps,
      status: status ?? (early?.stop ? 'stopped' : run.step === run.totalSteps ? 'finished' : 'running'),
      stopReason: early?.stop ?? (status === 'stopped' ? (this.stopReason ?? 'another rank was asked to stop') : null),
      lastCheckpoint: run.lastCheckpoint,
      best: bestOf(run),
    };
    try {
      await report(progress);
    } catch (err) {
      this.opts.events?.warn?.(`could not write the run report: ${(err as Error).message}`);
    }
  }

  private stopped(run: RunState, loss: number, code: number): TrainSummary {
    return {
      steps: run.step,
      lastLoss: loss,
      losses: run.losses,
      stoppedEarly: true,
      stopReason: this.stopReason ?? 'another rank was asked to stop',
      stopCode: code,
      lastCheckpoint: run.lastCheckpoint,
      earlyStopped: null,
      best: bestOf(run),
    };
  }
}

function bestOf(run: RunState): BestCheckpoint | null {
  const e = run.early;
  if (!e || e.bestValue === null) return null;
  return { metric: e.metric, value: e.bestValue, step: e.bestStep, checkpoint: e.bestCheckpoint === null ? null : join(run.ckRoot, e.bestCheckpoint) };
}
