// `sftkit run --run_mode train|finetune`: checks the records against the model and memory, then runs the
// Trainer with progress on rank 0; a stop signal saves a checkpoint and exits with 128 + the signal.
import { freemem, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { formatProfile, profileRows, startProfile, stopProfile } from '../../../backend/profile.ts';
import type { RowStore } from '../../../data/row-store.ts';
import { exitTogether } from '../../../distributed/index.ts';
import { ConfigError } from '../../../errors.ts';
import type { CausalLM } from '../../../models/model.ts';
import type { RunConfig } from '../../../train/config.ts';
import { RecordsBatchSource } from '../../../train/records-source.ts';
import { Trainer } from '../../../train/trainer.ts';
import { writeRunReport } from '../../../train/report/run-report.ts';
import { estimateTrainingMemory, formatMemoryEstimate } from '../../../train/memory-estimate.ts';
import { tooBigError } from './memory.ts';
import { type MetricName, evaluateGeneration } from '../../../eval/index.ts';
import { examplesFromRecords } from '../../../eval/record-examples.ts';
import { defaultEosIds } from '../../../generate/index.ts';
import { stopExitCode } from '../../stop-signals.ts';
import { type RunContext, openDataset } from './context.ts';

/**
 * Rows longer than the positions the model was trained for: GPT-2's learned positions end there, and a RoPE model
 * meets angles it never saw unless config.json scales them (rope_scaling), so only then is it allowed.
 */
function checkSequenceLength(model: CausalLM, rows: RowStore): void {
  const c = model.config;
  const [limit, key] = c.family === 'llama' ? [c.maxPositionEmbeddings, 'max_position_embeddings'] : [c.nPositions, 'n_positions'];
  if (rows.seqLength <= limit || (c.family === 'llama' && c.ropeScaling !== null)) return;
  throw new ConfigError(`${rows.source}: seq_length ${rows.seqLength} is above the model's ${key} ${limit}`, {
    where: 'train_dataset.dataset_dir',
    hint:
      c.family === 'llama'
        ? `preprocess again with --seq_length ${limit} or less, or set rope_scaling in the model's config.json to train at longer lengths`
        : `preprocess again with --seq_length ${limit} or less (GPT-2 has no positions beyond ${limit})`,
  });
}

/** Prints the parameter counts and the memory estimate; refuses (unless --force) when it exceeds free memory. */
function checkMemory(ctx: RunContext, seqLength: number): void {
  const { cfg, model, out } = ctx;
  const counts = model.params.counts();
  const frozenCount = model.params.frozen.names.length;
  const total = counts.trainableParams + counts.frozenParams;
  out.line(`model: ${model.config.modelType}, ${total.toLocaleString('en-US')} parameters, ${counts.trainableParams.toLocaleString('en-US')} trainable${frozenCount > 0 ? ` (${frozenCount} tensors frozen, ${cfg.model.base_dtype}${counts.frozenMappedBytes > 0 ? ', mapped from the checkpoint' : ''})` : ''}`);
  const input = {
    config: model.config,
    weights: counts,
    batchSize: cfg.runner_config.batch_size,
    seqLength,
    recompute: cfg.model.recompute,
    worldSize: ctx.pg.size,
    zeroStage: cfg.parallel_config.zero_stage,
    widenedHead: model.params.frozenRows(model.lmHeadName) !== null,
    bucketBytes: cfg.parallel_config.bucket_mb * 2 ** 20,
    ...(model.params.lora ? { lora: { modules: [...model.params.lora.modules.values()], dropout: model.params.lora.options.dropout } } : {}),
  };
  const estimate = estimateTrainingMemory(input);
  const bytes = estimate.total;
  out.line(`${formatMemoryEstimate(estimate)} (available: ${(freemem() / 2 ** 30).toFixed(1)} of ${(totalmem() / 2 ** 30).toFixed(1)} GiB)`);
  if (bytes > freemem() && !ctx.flags.force) throw tooBigError(bytes, freemem(), model.config, cfg, seqLength, ctx.pg.size);
}

export async function runTraining(ctx: RunContext): Promise<void> {
  const { cfg, model, out, pg } = ctx;
  const records = openDataset(cfg.train_dataset.dataset_dir, 'train_dataset');
  let evalRecords: RowStore | null = null;
  try {
    evalRecords = cfg.callbacks.eval.do_eval ? openDataset(cfg.eval_dataset.dataset_dir, 'eval_dataset') : null;
    ctx.checkRows(records);
    if (evalRecords) ctx.checkRows(evalRecords);
    checkSequenceLength(model, records);
    checkMemory(ctx, records.seqLength);
    ctx.output.ensure();

    const batchSize = cfg.runner_config.batch_size;
    const train = new RecordsBatchSource(records, { batchSize, shuffle: cfg.train_dataset.shuffle, dropRemainder: cfg.train_dataset.drop_remainder, seed: cfg.seed, rank: pg.rank, worldSize: pg.size });
    if (pg.size > 1) out.line(`data parallel: ${pg.size} ranks × batch ${batchSize}${['', ', optimizer state sharded (ZeRO-1)', ', optimizer state and gradients sharded (ZeRO-2)', ', optimizer state, gradients and weights sharded (ZeRO-3)'][cfg.parallel_config.zero_stage]}`);
    const evalSource = evalRecords ? new RecordsBatchSource(evalRecords, { batchSize, shuffle: false, dropRemainder: false, seed: cfg.seed }) : null;
    const tokenizerDir = ctx.tokenizerDir;
    // Generation metrics at each eval step (callbacks.eval.metrics beyond perplexity): greedy or sampled
    // decoding of the eval records' prompts, scored against their answers.
    const evalTok = evalRecords ? ctx.tokenizer() : null;
    const evalRows = evalRecords;
    const generationMetrics =
      evalRows && evalTok
        ? (metrics: MetricName[]): Record<string, number> =>
            evaluateGeneration(model, evalTok, examplesFromRecords(evalRows, evalTok), { ...ctx.generationOptions(), metrics, eosTokenIds: defaultEosIds(model, evalTok) }).metrics
        : null;
    const trainer = new Trainer({
      config: cfg,
      model,
      train,
      evalSource,
      generationMetrics,
      assetsDir: tokenizerDir ? resolve(tokenizerDir) : null,
      resume: ctx.resume,
      base: ctx.base,
      pg,
      // ZeRO-3: the weights stay sharded after the last checkpoint (gathering them whole may not fit a rank).
      wholeModelAfter: false,
      // report.md and loss_curve.png in the output dir after every checkpoint save and at the end.
      report: (progress) => writeRunReport(cfg, progress),
      events: {
        step: (s) => out.step(s, cfg.callbacks.loss_monitor.log_every),
        eval: (step, r) => {
          const scores = Object.entries(r.metrics ?? {}).map(([k, v]) => `  ${k} ${v.toFixed(4)}`).join('');
          out.line(`eval at step ${step}: loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(3)}${scores}  (${r.tokens} tokens)`);
        },
        checkpoint: (dir) => out.line(`checkpoint: ${dir}`),
        warn: (m) => out.line(`warning: ${m}`),
        note: (m) => out.line(m),
      },
    });
    ctx.onStop = (sig) => trainer.requestStop(`received ${sig}`, stopExitCode(sig));
    // A signal that arrived while the model loaded stops the run before its first step.
    if (ctx.stops?.signal) ctx.onStop(ctx.stops.signal);

    if (ctx.flags.profile) startProfile();
    const summary = await trainer.run();
    if (ctx.flags.profile) {
      stopProfile();
      out.line(`native time by kernel (per optimizer step, over ${summary.steps} steps):\n${formatProfile(profileRows(), Math.max(1, summary.steps))}`);
    }

    if (summary.stoppedEarly) {
      let saved = 'nothing saved, it stopped before its first step';
      if (summary.lastCheckpoint) saved = `saved ${summary.lastCheckpoint}; continue with --resume_training`;
      else if (ctx.resume) saved = 'nothing new to save; continue with --resume_training';
      out.line(`stopped after step ${summary.steps} (${summary.stopReason}): ${saved}`);
      // Every rank agreed on this stop and wrote its part of the checkpoint: end together, with 128 + signal.
      exitTogether(summary.stopCode ?? 1);
    } else {
      out.line(`done: ${summary.steps} steps, last loss ${summary.lastLoss.toFixed(4)}${summary.lastCheckpoint ? `, checkpoint ${summary.lastCheckpoint}` : ''}`);
    }
    if (summary.best) {
      out.line(`best checkpoint: ${summary.best.checkpoint ?? '-'} (${summary.best.metric} ${summary.best.value.toFixed(4)} at step ${summary.best.step})`);
    }
    if (pg.rank === 0) out.line(`report: ${resolve(cfg.output_dir, 'report.md')}, ${resolve(cfg.output_dir, 'loss_curve.png')}`);
  } finally {
    records.close();
    evalRecords?.close();
  }
}
