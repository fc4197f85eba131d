// The training loop, top to bottom: gather a global batch, normalise the loss by its trained tokens,
// forward/backward each micro-batch in a step scope, clip, AdamW, log, evaluate, checkpoint. Resume
// restores weights, moments, step and data position exactly, so the losses continue bit for bit; a stop
// request (a signal) ends the run at the next step boundary, the same one on every rank, with a checkpoint.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, SftkitError } from '../errors.ts';
import { type CausalLM, lossSum, noDecay } from '../models/model.ts';
import { positionIds } from '../models/rope.ts';
import * as T from '../tensor/index.ts';
import { Rng, Tensor, backward, scope } from '../tensor/index.ts';
import { PerplexityAccumulator } from '../eval/perplexity.ts';
import { shiftRows } from '../data/shift.ts';
import { type ProcessGroup, SingleProcessGroup } from '../distributed/index.ts';
import { clipScale } from './adamw.ts';
import type { BatchSource } from './batches.ts';
import { type LoadedCheckpoint, checkpointName, saveCheckpoint, sweepCheckpointRoot } from './checkpoint.ts';
import type { RunConfig } from './config.ts';
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
}

export interface TrainerEvents {
  step?(info: StepInfo): void;
  eval?(step: number, result: EvalResult): void;
  checkpoint?(dir: string): void;
  warn?(message: string): void;
  /** Housekeeping worth a log line (leftovers of an interrupted run removed at start). */
  note?(message: string): void;
}

export interface TrainerOptions {
  config: RunConfig;
  model: CausalLM;
  train: BatchSource;
  /** Evaluation batches (epoch 0 is read in order). */
  evalSource?: BatchSource | null;
  /** Where tokenizer and generation files for checkpoints come from. */
  assetsDir: string | null;
  /** A training checkpoint to continue from (its weights are already in `model`). */
  resume?: LoadedCheckpoint | null;
  /** Data-parallel ranks (default: this process alone). `train` must be this rank's shard of the batches. */
  pg?: ProcessGroup;
  events?: TrainerEvents;
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
}

function countTrained(targets: Int32Array): number {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== -100) n++;
  return n;
}

/** Parameters matching freeze.include (and not freeze.exclude) are frozen. */
export function frozenSet(names: readonly string[], freeze: { include: string[]; exclude: string[] }): Set<string> {
  const compile = (patterns: string[], key: string): RegExp[] =>
    patterns.map((p) => {
      try {
        return new RegExp(p);
      } catch (err) {
        throw new ConfigError(`freeze.${key}: invalid regex ${JSON.stringify(p)} (${(err as Error).message})`, { where: `freeze.${key}` });
      }
    });
  const inc = compile(freeze.include, 'include');
  const exc = compile(freeze.exclude, 'exclude');
  return new Set(names.filter((n) => inc.some((r) => r.test(n)) && !exc.some((r) => r.test(n))));
}

/** Mean token loss over every batch of epoch 0 of `source`, without gradients and without full logits. */
export function evaluateLoss(model: CausalLM, source: BatchSource): EvalResult {
  const acc = new PerplexityAccumulator(model, { seqLength: source.rowLength - 1 });
  for (let i = 0; i < source.batchesPerEpoch; i++) acc.add(source.batch(0, i));
  return acc.result();
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
    const { config: cfg, model, train, events } = this.opts;
    const rc = cfg.runner_config;
    const accum = rc.gradient_accumulation_steps;
    const stepsPerEpoch = Math.floor(train.batchesPerEpoch / accum);
    if (stepsPerEpoch < 1) {
      throw new ConfigError(`the training data has ${train.batchesPerEpoch} batches of ${train.batchSize}, fewer than one optimizer step (gradient_accumulation_steps ${accum})`, {
        where: 'train_dataset',
      });
    }
    const totalSteps = rc.max_steps > 0 ? rc.max_steps : rc.epochs * stepsPerEpoch;
    const schedule: LrSchedule = {
      type: cfg.lr_schedule.type,
      warmupSteps: warmupStepsOf(cfg.lr_schedule, totalSteps),
      totalSteps,
      lr: cfg.optimizer.learning_rate,
      lrEnd: cfg.lr_schedule.lr_end,
    };

    const frozen = frozenSet(model.params.names, cfg.freeze);
    for (const name of model.params.names) model.params.get(name).requiresGrad = !frozen.has(name);
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
    const optimizer: TrainOptimizer = cfg.parallel_config.optimizer_shard ? new ZeroAdamW(model.params, pg, adamw) : new ReplicatedAdamW(model.params, pg, adamw);
    const rng = new Rng(cfg.seed);
    let step = 0;
    if (this.opts.resume) {
      const r = this.opts.resume;
      optimizer.load(join(r.dir, 'optimizer'));
      step = r.state.step;
      if (r.state.lr_schedule.total_steps !== totalSteps) {
        events?.warn?.(`resuming a run planned for ${r.state.lr_schedule.total_steps} steps with ${totalSteps} steps: the LR schedule changes`);
      }
      const mine = r.ranks.find((x) => x.rank === pg.rank) ?? r.ranks[0];
      if (mine) rng.setState(mine.rng);
    }

    const outDir = cfg.output_dir;
    const lead = pg.rank === 0;
    if (lead) mkdirSync(outDir, { recursive: true });
    const metricsPath = join(outDir, 'metrics.jsonl');
    const ckRoot = join(outDir, 'checkpoint');
    const ck = cfg.callbacks.checkpoint;
    // What an interrupted run left behind goes before this run saves anything (only rank 0 touches the root).
    if (lead) sweepCheckpointRoot(ckRoot, { keep: this.opts.resume?.name ?? null, log: (m) => events?.note?.(m) });
    const losses: number[] = [];
    let lastCheckpoint: string | null = null;
    let savedStep = this.opts.resume?.state.step ?? -1;
    const started = performance.now();
    const stepsAtStart = step;

    const save = async (epoch: number): Promise<void> => {
      const name = checkpointName(ck.prefix, epoch + 1, step);
      lastCheckpoint = await saveCheckpoint({
        root: ckRoot,
        name,
        model,
        optimizer,
        state: {
          epoch,
          step,
          consumed_samples: step * accum * train.batchSize * pg.size,
          lr_schedule: { type: schedule.type, total_steps: totalSteps, warmup_steps: schedule.warmupSteps, lr: schedule.lr, lr_end: schedule.lrEnd },
          loss_scale: 1,
          world_size: pg.size,
          config: cfg,
        },
        rank: { rank: pg.rank, rng: rng.getState(), loader: { epoch: Math.floor(step / stepsPerEpoch), batch: (step % stepsPerEpoch) * accum } },
        assetsDir: this.opts.assetsDir,
        keepMax: ck.keep_checkpoint_max,
        pg,
      });
      savedStep = step;
      if (lead) events?.checkpoint?.(lastCheckpoint);
    };
    const stopped = (loss: number, code: number): TrainSummary => ({
      steps: step,
      lastLoss: loss,
      losses,
      stoppedEarly: true,
      stopReason: this.stopReason ?? 'another rank was asked to stop',
      stopCode: code,
      lastCheckpoint,
    });

    try {
      // A stop asked for while the model was loading: nothing new to save.
      const early = this.stopAgreed(pg);
      if (early > 0) return stopped(NaN, early);
      while (step < totalSteps) {
        const epoch = Math.floor(step / stepsPerEpoch);
        const inEpoch = step % stepsPerEpoch;
        const t0 = performance.now();

        // The global batch: its trained-token count normalises every micro-batch's loss.
        const micro = Array.from({ length: accum }, (_, j) => shiftRows(train.batch(epoch, inEpoch * accum + j), train.rowLength));
        const trainedTokens = pg.allReduceNumbers([micro.reduce((n, m) => n + countTrained(m.targets), 0)])[0] as number;
        model.params.zeroGrad();
        let lossTotal = 0;
        const S = train.rowLength - 1;
        for (const m of micro) {
          // model.dtype bfloat16: the GEMMs of forward and backward run in bf16 compute (T.autocast); the
          // weights, their gradients, the optimizer state and every other op stay fp32.
          lossTotal += scope(() =>
            T.autocast(cfg.model.dtype, () => {
              const hidden = model.forward(Tensor.from(m.ids, [m.rows, S], 'int32'), {
                positions: positionIds(m.rows, S, { segments: m.segments }),
                segments: m.segments,
                recompute: cfg.model.recompute,
              });
              // The loss is normalised by the global batch's trained tokens, known before the micro-batches:
              // the loss and its gradients come from one sweep, and backward brings exactly that scale.
              const scaled = trainedTokens > 0;
              const { lossSum: sum } = lossSum(model, hidden, Tensor.from(m.targets, [m.rows, S], 'int32'), scaled ? { gradScale: 1 / trainedTokens } : {});
              // Read the loss first: backward frees the graph's activations as it goes.
              const value = sum.item();
              if (scaled) backward(T.scale(sum, 1 / trainedTokens), undefined, { releaseActivations: true });
              return value;
            }),
          );
        }
        const loss = trainedTokens > 0 ? (pg.allReduceNumbers([lossTotal])[0] as number) / trainedTokens : 0;
        optimizer.reduceGradients();
        const gradNorm = optimizer.gradNorm();
        if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
          throw new TrainingError(`step ${step + 1}: ${!Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${gradNorm}`}; stopped before updating the weights`, {
            hint: lastCheckpoint ? `the last good checkpoint is ${lastCheckpoint}` : 'lower the learning rate or check the data',
          });
        }
        const lr = learningRate(schedule, step);
        if (trainedTokens > 0) optimizer.update(lr, clipScale(gradNorm, rc.clip_grad_norm), (n) => frozen.has(n));
        step += 1;
        losses.push(loss);

        const now = performance.now();
        const elapsed = (now - started) / 1000;
        const perStep = elapsed / (step - stepsAtStart);
        const info: StepInfo = {
          step,
          totalSteps,
          epoch: epoch + 1,
          loss,
          lr,
          gradNorm,
          trainedTokens,
          tokensPerSecond: (accum * train.batchSize * S * pg.size) / ((now - t0) / 1000),
          elapsedSeconds: elapsed,
          etaSeconds: perStep * (totalSteps - step),
        };
        if (lead && (step % cfg.callbacks.loss_monitor.log_every === 0 || step === totalSteps)) {
          appendFileSync(metricsPath, `${JSON.stringify({ type: 'train', step, total_steps: totalSteps, epoch: epoch + 1, loss, lr, grad_norm: gradNorm, trained_tokens: trainedTokens, tokens_per_s: info.tokensPerSecond })}\n`);
        }
        if (lead) events?.step?.(info);

        const evalCfg = cfg.callbacks.eval;
        if (evalCfg.do_eval && this.opts.evalSource && (step % evalCfg.eval_steps === 0 || step === totalSteps)) {
          // Every rank evaluates the whole eval set (the replicas are equal); rank 0 reports.
          const source = this.opts.evalSource;
          const result = T.autocast(cfg.model.dtype, () => evaluateLoss(model, source));
          if (lead) {
            appendFileSync(metricsPath, `${JSON.stringify({ type: 'eval', step, ...result })}\n`);
            events?.eval?.(step, result);
          }
        }
        if (step % ck.save_checkpoint_steps === 0 || step === totalSteps) await save(Math.floor((step - 1) / stepsPerEpoch));
        // Let signal handlers run between steps.
        await new Promise<void>((resolve) => setImmediate(resolve));
        // A stop on any rank stops all of them after this same step, so they all save the same checkpoint.
        const stop = step < totalSteps ? this.stopAgreed(pg) : 0;
        if (stop > 0) {
          if (savedStep !== step) await save(Math.floor((step - 1) / stepsPerEpoch));
          return stopped(loss, stop);
        }
      }
    } finally {
      optimizer.release();
    }
    return { steps: step, lastLoss: losses[losses.length - 1] ?? NaN, losses, stoppedEarly: false, stopReason: null, stopCode: null, lastCheckpoint };
  }
}
