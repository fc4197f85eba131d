// `sftkit demo` (npm start): MindFormers' SFT workflow end to end on the bundled assets — convert the
// pretrained base model, alpaca → conversations → token records, evaluate, fine-tune, evaluate again,
// predict — and a report that shows what fine-tuning taught the model.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertHfToCheckpoint } from '../../convert/hf-to-checkpoint.ts';
import { alpacaPrompt, convertAlpacaFile } from '../../data/alpaca.ts';
import { promptIds } from '../../data/prompt.ts';
import { preprocess } from '../../data/preprocess.ts';
import { openRecords } from '../../data/records.ts';
import { ConfigError } from '../../errors.ts';
import { evaluateGeneration } from '../../eval/generation-eval.ts';
import { exactMatch } from '../../eval/metrics.ts';
import type { CausalLM } from '../../models/model.ts';
import { Tokenizer } from '../../tokenizer/index.ts';
import { loadRunConfig } from '../../train/config.ts';
import { loadModel } from '../../train/model-io.ts';
import { attachLoraFor } from '../../train/lora-io.ts';
import { RecordsBatchSource } from '../../train/records-source.ts';
import { type EvalResult, Trainer, evaluateLoss } from '../../train/trainer.ts';
import { StepPrinter } from '../progress.ts';
import { writeLossCurve } from '../../train/report/loss-curve.ts';
import { readMetrics } from '../../train/report/run-report.ts';
import { type DemoReport, renderReport } from './report.ts';

export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface DemoOptions {
  outputDir: string;
  assetsDir?: string;
  /** Use only this many training / eval samples and epochs (the test's shortened run). */
  trainSamples?: number;
  evalSamples?: number;
  epochs?: number;
  seqLength?: number;
  /** The fine-tuning recipe (default configs/demo/finetune.yaml; configs/demo/finetune_lora.yaml trains LoRA adapters). */
  configPath?: string;
  /** Extra dotted overrides of the recipe (experiments). */
  overrides?: Record<string, unknown>;
  print?: StepPrinter;
}

interface AlpacaSample {
  instruction: string;
  input: string;
  output: string;
}

export interface Scored {
  em: number;
  byTask: Record<string, number>;
  predictions: string[];
}

/** Greedy answers to held-out prompts (vicuna around the alpaca prompt, as in training), scored by EM. */
function scoreExactMatch(model: CausalLM, tok: Tokenizer, samples: readonly AlpacaSample[], tasks: readonly string[], maxNewTokens: number): Scored {
  const examples = samples.map((s) => ({ prompt: promptIds(tok, 'vicuna', alpacaPrompt(s.instruction, s.input)), references: s.output }));
  const predictions = evaluateGeneration(model, tok, examples, { maxNewTokens, batchSize: 32, metrics: [] }).predictions.map((p) => p.trim());
  const hits = predictions.map((p, i) => exactMatch(p, (samples[i] as AlpacaSample).output));
  const byTask: Record<string, number> = {};
  const counts: Record<string, number> = {};
  tasks.forEach((t, i) => {
    byTask[t] = (byTask[t] ?? 0) + (hits[i] as number);
    counts[t] = (counts[t] ?? 0) + 1;
  });
  for (const t of Object.keys(byTask)) byTask[t] = (byTask[t] as number) / (counts[t] as number);
  return { em: hits.reduce((a, b) => a + b, 0) / Math.max(1, hits.length), byTask, predictions };
}

/** EM of always giving the most common reference answer. */
function majorityBaseline(samples: readonly AlpacaSample[]): { answer: string; em: number } {
  const counts = new Map<string, number>();
  for (const s of samples) counts.set(s.output, (counts.get(s.output) ?? 0) + 1);
  let answer = '';
  let best = 0;
  for (const [a, n] of counts) if (n > best) [answer, best] = [a, n];
  return { answer, em: samples.reduce((n, s) => n + exactMatch(answer, s.output), 0) / Math.max(1, samples.length) };
}

export async function runDemo(o: DemoOptions): Promise<DemoReport> {
  const print = o.print ?? new StepPrinter();
  const assets = o.assetsDir ?? join(PACKAGE_ROOT, 'assets', 'demo');
  for (const f of ['base-model/config.json', 'alpaca_train.json', 'alpaca_eval.json', 'eval_tasks.json']) {
    if (!existsSync(join(assets, f))) throw new ConfigError(`demo asset ${join(assets, f)} is missing`, { hint: 'rebuild them with scripts/make-demo-assets.sh' });
  }
  const out = o.outputDir;
  const timings: { step: string; seconds: number }[] = [];
  const timed = async <T>(name: string, fn: () => Promise<T> | T): Promise<T> => {
    print.line(`\n== ${name}`);
    const t0 = performance.now();
    const r = await fn();
    const s = (performance.now() - t0) / 1000;
    timings.push({ step: name, seconds: s });
    print.line(`   (${s.toFixed(1)} s)`);
    return r;
  };

  // Only the demo's own outputs are replaced on a rerun.
  for (const p of ['base-checkpoint', 'data', 'checkpoint', 'metrics.jsonl', 'eval_results.json', 'predict_results.jsonl', 'loss_curve.png', 'report.md']) {
    rmSync(join(out, p), { recursive: true, force: true });
  }
  mkdirSync(join(out, 'data'), { recursive: true });

  const cfgPath = o.configPath ?? join(PACKAGE_ROOT, 'configs', 'demo', 'finetune.yaml');
  const overrides: Record<string, unknown> = { output_dir: out };
  if (o.epochs !== undefined) overrides['runner_config.epochs'] = o.epochs;
  Object.assign(overrides, o.overrides ?? {});
  const cfg = loadRunConfig(cfgPath, overrides);
  const seqLength = o.seqLength ?? 512;

  const allTrain = JSON.parse(readFileSync(join(assets, 'alpaca_train.json'), 'utf8')) as AlpacaSample[];
  const allEval = JSON.parse(readFileSync(join(assets, 'alpaca_eval.json'), 'utf8')) as AlpacaSample[];
  const allTasks = JSON.parse(readFileSync(join(assets, 'eval_tasks.json'), 'utf8')) as string[];
  const evalSamples = allEval.slice(0, o.evalSamples ?? allEval.length);
  const evalTasks = allTasks.slice(0, evalSamples.length);
  const trainPath = join(out, 'data', 'alpaca_train.json');
  const evalPath = join(out, 'data', 'alpaca_eval.json');
  writeFileSync(trainPath, JSON.stringify(allTrain.slice(0, o.trainSamples ?? allTrain.length), null, 1));
  writeFileSync(evalPath, JSON.stringify(evalSamples, null, 1));

  const ckpt = join(out, 'base-checkpoint');
  await timed('1. convert the pretrained HF model (bf16 safetensors) into a sftkit checkpoint', async () => {
    const r = await convertHfToCheckpoint({ inputPath: join(assets, 'base-model'), outputPath: ckpt, dtype: 'float32' });
    print.line(`   sftkit convert --input_path ${relative(process.cwd(), join(assets, 'base-model'))} --output_path ${ckpt} --dtype float32`);
    print.line(`   ${r.tensors} tensors, ${r.modelType} -> ${ckpt}`);
  });

  const conv = { train: join(out, 'data', 'train_conversations.json'), eval: join(out, 'data', 'eval_conversations.json') };
  await timed('2. alpaca -> conversations', () => {
    for (const [src, dst] of [[trainPath, conv.train], [evalPath, conv.eval]] as const) {
      const r = convertAlpacaFile(src, dst, { force: true });
      print.line(`   sftkit data alpaca --data_path ${src} --output_path ${dst}: ${r.samples} samples`);
    }
  });

  const tok = Tokenizer.fromDir(ckpt);
  const records = { train: join(out, 'data', 'train_records'), eval: join(out, 'data', 'eval_records') };
  const reports = await timed(`3. conversations -> token records (vicuna template, tokenizer.model, seq_length ${seqLength}, packed)`, async () => {
    const res = [];
    for (const [src, dst] of [[conv.train, records.train], [conv.eval, records.eval]] as const) {
      const r = await preprocess({ datasetType: 'qa', inputGlob: src, tokenizer: tok, seqLength, outputDir: dst, template: 'vicuna', packing: true, truncation: 'drop' });
      print.line(`   ${dst}: ${r.report.samples_in} samples -> ${r.report.rows_out} rows, ${r.report.trained_tokens} trained tokens, ${r.report.dropped.count} dropped`);
      res.push(r.report);
    }
    return res;
  });

  const model = loadModel(ckpt, cfg.seed);
  const trainRecords = openRecords(records.train);
  const evalRecords = openRecords(records.eval);
  try {
    const evalSource = new RecordsBatchSource(evalRecords, { batchSize: 8, shuffle: false, dropRemainder: false, seed: 0 });
    const maxNew = cfg.generation.max_new_tokens;
    const baseline = majorityBaseline(evalSamples);
    const before = await timed('4. evaluate the base model (loss, perplexity, exact match by greedy generation)', () => {
      const loss = evaluateLoss(model, evalSource);
      const scored = scoreExactMatch(model, tok, evalSamples, evalTasks, maxNew);
      print.line(`   eval loss ${loss.loss.toFixed(4)}, perplexity ${loss.perplexity.toFixed(2)}, exact match ${(100 * scored.em).toFixed(1)}%`);
      return { loss, scored };
    });

    const trainSource = new RecordsBatchSource(trainRecords, { batchSize: cfg.runner_config.batch_size, shuffle: true, dropRemainder: true, seed: cfg.seed });
    const evalPoints: { step: number; result: EvalResult }[] = [];
    // A LoRA recipe (lora.rank > 0) adds adapters to the evaluated base and trains them alone.
    attachLoraFor(model, cfg, { checkpointDir: null, training: true });
    const summary = await timed(model.params.lora ? `5. fine-tune LoRA adapters (rank ${cfg.lora.rank}, ${model.params.counts().trainableParams.toLocaleString('en-US')} trainable parameters)` : '5. fine-tune all parameters', async () => {
      const trainer = new Trainer({
        config: cfg,
        model,
        train: trainSource,
        evalSource,
        assetsDir: ckpt,
        // LoRA checkpoints hold the adapter and name the base checkpoint instead of copying it.
        base: model.params.lora ? { name_or_path: ckpt, dir: resolve(ckpt) } : null,
        events: {
          step: (s) => print.step(s, cfg.callbacks.loss_monitor.log_every),
          eval: (step, r) => {
            evalPoints.push({ step, result: r });
            print.line(`   eval at step ${step}: loss ${r.loss.toFixed(4)}, perplexity ${r.perplexity.toFixed(2)}`);
          },
          checkpoint: (dir) => print.line(`   checkpoint: ${dir}`),
        },
      });
      return trainer.run();
    });

    const after = await timed('6. evaluate the fine-tuned model', () => {
      const loss = evaluateLoss(model, evalSource);
      const scored = scoreExactMatch(model, tok, evalSamples, evalTasks, maxNew);
      print.line(`   eval loss ${loss.loss.toFixed(4)}, perplexity ${loss.perplexity.toFixed(2)}, exact match ${(100 * scored.em).toFixed(1)}%`);
      return { loss, scored };
    });

    const examples = await timed('7. predict: a few held-out prompts before and after', () => {
      const picked: number[] = [];
      const seen = new Set<string>();
      evalTasks.forEach((t, i) => {
        if (!seen.has(t)) {
          seen.add(t);
          picked.push(i);
        }
      });
      const rows = picked.map((i) => ({
        task: evalTasks[i] as string,
        instruction: (evalSamples[i] as AlpacaSample).instruction,
        input: (evalSamples[i] as AlpacaSample).input,
        reference: (evalSamples[i] as AlpacaSample).output,
        before: before.scored.predictions[i] as string,
        after: after.scored.predictions[i] as string,
      }));
      writeFileSync(join(out, 'predict_results.jsonl'), rows.map((r) => JSON.stringify({ prompt: `${r.instruction}\n${r.input}`, output: r.after })).join('\n') + '\n');
      for (const r of rows) print.line(`   [${r.task}] ${r.input}\n      reference: ${r.reference} | before: ${JSON.stringify(r.before)} | after: ${JSON.stringify(r.after)}`);
      return rows;
    });

    const report: DemoReport = {
      baseModel: relative(PACKAGE_ROOT, join(assets, 'base-model')),
      params: model.params.counts().trainableParams + model.params.counts().frozenParams,
      trainSamples: Math.min(allTrain.length, o.trainSamples ?? allTrain.length),
      evalSamples: evalSamples.length,
      seqLength,
      preprocess: reports,
      before: { loss: before.loss, em: before.scored.em, byTask: before.scored.byTask },
      after: { loss: after.loss, em: after.scored.em, byTask: after.scored.byTask },
      majority: baseline,
      steps: summary.steps,
      finalTrainLoss: summary.lastLoss,
      checkpoint: summary.lastCheckpoint ? relative(out, summary.lastCheckpoint) : null,
      examples,
      timings,
      config: cfg,
    };
    await timed('8. report: loss curve and report.md', async () => {
      const trainPoints = readMetrics(join(out, 'metrics.jsonl')).train.map((m) => ({ step: m.step, loss: m.loss, series: 'training loss' }));
      const evalCurve = [{ step: 0, loss: before.loss.loss, series: 'held-out loss' }, ...evalPoints.map((p) => ({ step: p.step, loss: p.result.loss, series: 'held-out loss' }))];
      await writeLossCurve([...trainPoints, ...evalCurve], join(out, 'loss_curve.png'), 'Fine-tuning the demo Llama on instruction tasks');
      writeFileSync(join(out, 'eval_results.json'), `${JSON.stringify({ before: report.before, after: report.after, majority: report.majority }, null, 2)}\n`);
      writeFileSync(join(out, 'report.md'), renderReport(report));
      print.line(`   ${join(out, 'report.md')}, ${join(out, 'loss_curve.png')}`);
    });
    return report;
  } finally {
    trainRecords.close();
    evalRecords.close();
    model.release();
  }
}
