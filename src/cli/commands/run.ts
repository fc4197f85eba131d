// `sftkit run`: MindFormers' run_mindformer.py — train, finetune, eval or predict from a YAML config,
// with flags and dotted overrides (--optimizer.learning_rate 2e-5) mapped onto config keys.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { type Records, openRecords, validateRecordsFor } from '../../data/records.ts';
import { promptIds } from '../../data/prompt.ts';
import { generationTemplate, trainedUserMessage } from '../../data/recorded-template.ts';
import { ConfigError } from '../../errors.ts';
import { type MetricName, evaluateGeneration } from '../../eval/index.ts';
import { examplesFromRecords } from '../../eval/record-examples.ts';
import { defaultEosIds, generate, generationText } from '../../generate/index.ts';
import { formatProfile, profileRows, startProfile, stopProfile } from '../../backend/profile.ts';
import { exitTogether, initProcessGroup } from '../../distributed/index.ts';
import { ckptConfigDir, isMindSporeCkpt, loadMindSporeModel } from '../../convert/mindspore-convert.ts';
import { resolveCheckpointDir } from '../../formats/checkpoint-dir.ts';
import { writeFileAtomicSync } from '../../formats/write-file.ts';
import { resolveModelDir } from '../../hub/index.ts';
import { readModelConfig } from '../../models/config.ts';
import type { CausalLM } from '../../models/model.ts';
import { Tokenizer } from '../../tokenizer/index.ts';
import { findResumeCheckpoint } from '../../train/checkpoint.ts';
import { type RunConfig, applyOverrides, loadRunConfig, parseRunConfig, parseValue } from '../../train/config.ts';
import { createModel, loadModel } from '../../train/model-io.ts';
import { RecordsBatchSource } from '../../train/records-source.ts';
import { Trainer, evaluateLoss, frozenSet } from '../../train/trainer.ts';
import { autocast, bf16GemmPath } from '../../tensor/index.ts';
import { OutputDir } from '../output-dir.ts';
import { StepPrinter } from '../progress.ts';
import { StopWatch, stopExitCode, stopTimeoutSeconds } from '../stop-signals.ts';

/** A sink for the output of ranks other than 0. */
function quietStream(): NodeJS.WriteStream {
  return { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;
}

/** CLI flags and the config key each one sets. */
const FLAG_KEYS: Record<string, string> = {
  run_mode: 'run_mode',
  load_checkpoint: 'load_checkpoint',
  train_dataset_dir: 'train_dataset.dataset_dir',
  eval_dataset_dir: 'eval_dataset.dataset_dir',
  do_eval: 'callbacks.eval.do_eval',
  resume_training: 'resume_training',
  output_dir: 'output_dir',
  epochs: 'runner_config.epochs',
  batch_size: 'runner_config.batch_size',
  gradient_accumulation_steps: 'runner_config.gradient_accumulation_steps',
  seed: 'seed',
  predict_batch_size: 'generation.batch_size',
  template: 'generation.template',
  max_new_tokens: 'generation.max_new_tokens',
  do_sample: 'generation.do_sample',
  top_k: 'generation.top_k',
  top_p: 'generation.top_p',
  temperature: 'generation.temperature',
};

interface RunFlags {
  config?: string;
  force?: boolean;
  profile?: boolean;
  usePar?: boolean;
  predict_data?: string;
  [key: string]: unknown;
}

/** Splits `--a.b.c value` pairs (unknown to commander) into overrides. */
export function dottedOverrides(args: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith('--')) throw new ConfigError(`unexpected argument ${JSON.stringify(a)}`, { hint: 'overrides are written --section.key value' });
    const eq = a.indexOf('=');
    const key = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith('--')) value = 'true';
      else {
        value = next;
        i++;
      }
    }
    out[key] = parseValue(value);
  }
  return out;
}

export function buildRunConfig(flags: RunFlags, rest: readonly string[]): RunConfig {
  const overrides: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const v = flags[flag];
    if (v !== undefined) overrides[key] = typeof v === 'string' ? parseValue(v) : v;
  }
  if (overrides['resume_training'] === '' || overrides['resume_training'] === null) overrides['resume_training'] = true;
  Object.assign(overrides, dottedOverrides(rest));
  if (!flags.config) return parseRunConfig(applyOverrides({}, overrides), 'flags');
  if (!existsSync(flags.config)) throw new ConfigError(`--config ${flags.config}: no such file`, { where: flags.config });
  return loadRunConfig(flags.config, overrides);
}

/** The directory a model comes from: a checkpoint, a checkpoint/ root, an HF folder, or a hub repo id. */
export async function modelDirOf(pathOrRepo: string): Promise<string> {
  if (existsSync(pathOrRepo)) {
    if (existsSync(join(pathOrRepo, 'config.json'))) return pathOrRepo;
    return resolveCheckpointDir(pathOrRepo);
  }
  return (await resolveModelDir(pathOrRepo)).path;
}

function archConfigPath(arch: string): string {
  const candidates = [arch, join(arch, 'config.json'), join('configs', 'tiny', `${arch}.json`)];
  for (const c of candidates) if (existsSync(c) && c.endsWith('.json')) return c;
  throw new ConfigError(`model.arch ${JSON.stringify(arch)}: no such config.json (or preset under configs/tiny/)`, { where: 'model.arch' });
}

function estimateBytes(model: CausalLM, cfg: RunConfig, seqLength: number): number {
  const params = model.params.values.layout.size;
  const c = model.config;
  const hidden = c.family === 'llama' ? c.hiddenSize : c.nEmbd;
  const layers = c.numHiddenLayers;
  // Weights, gradients, two AdamW moments in fp32; activations kept per layer (about 16 hidden-sized
  // tensors per token and layer), a quarter of that with recompute.
  const act = cfg.runner_config.batch_size * seqLength * hidden * layers * 16 * 4 * (cfg.model.recompute ? 0.25 : 1);
  return params * 16 + act;
}

function openDataset(dir: string, what: string): Records {
  if (!dir) throw new ConfigError(`${what}.dataset_dir is not set`, { where: `${what}.dataset_dir`, hint: `pass --${what}_dir DIR (the output of sftkit data preprocess)` });
  return openRecords(dir);
}

async function run(flags: RunFlags, rest: string[]): Promise<void> {
  const cfg = buildRunConfig(flags, rest);
  const dp = cfg.parallel_config.data_parallel;
  const pg = initProcessGroup(dp === 'auto' ? {} : { worldSize: dp });
  // Only rank 0 prints; every rank logs to its own worker_<r>.log through the launcher anyway.
  const out = new StepPrinter(pg.rank === 0 ? process.stdout : quietStream());
  if (cfg.model.dtype === 'bfloat16') {
    out.line(`model.dtype bfloat16: mixed precision, GEMMs on ${bf16GemmPath()}; weights, optimizer state and checkpoints stay fp32`);
  }
  if (flags.usePar) out.line('note: --use_parallel is implied by `sftkit launch`; this process trains alone');
  const mode = cfg.run_mode;
  // Training stops gracefully on SIGINT, SIGTERM and SIGUSR1, from now on: a signal forwarded by the launcher
  // while the model loads must not kill a rank (or open Node's inspector, SIGUSR1's default).
  let trainer: Trainer | null = null;
  const stops =
    mode === 'train' || mode === 'finetune'
      ? new StopWatch({ onStop: (sig) => trainer?.requestStop(`received ${sig}`, stopExitCode(sig)), print: (l) => out.line(l), timeoutSeconds: stopTimeoutSeconds() })
      : null;

  // The model: from the checkpoint to resume, --load_checkpoint, or model.arch (train from scratch).
  let resume = null;
  let modelDir: string | null = null;
  let mindsporeCkpt: string | null = null;
  if (cfg.resume_training !== false) {
    const name = typeof cfg.resume_training === 'string' ? cfg.resume_training : null;
    resume = findResumeCheckpoint(join(cfg.output_dir, 'checkpoint'), name, (m) => out.line(`warning: ${m}`));
    modelDir = resume.dir;
    out.line(`resuming from ${resume.dir} (step ${resume.state.step})`);
  } else if (cfg.load_checkpoint && isMindSporeCkpt(cfg.load_checkpoint)) {
    // A MindFormers .ckpt: weights only; config.json (and the tokenizer) from model.arch or the .ckpt's folder.
    mindsporeCkpt = cfg.load_checkpoint;
    modelDir = ckptConfigDir(mindsporeCkpt, cfg.model.arch);
  } else if (cfg.load_checkpoint) {
    modelDir = await modelDirOf(cfg.load_checkpoint);
  } else if (mode !== 'train') {
    throw new ConfigError(`run_mode ${mode} needs --load_checkpoint`, { where: 'load_checkpoint' });
  }
  const model: CausalLM = mindsporeCkpt !== null && modelDir !== null ? loadMindSporeModel(mindsporeCkpt, modelDir, cfg.seed) : modelDir ? loadModel(modelDir, cfg.seed) : createModel(readModelConfig(archConfigPath(cfg.model.arch)), cfg.seed);
  const tokenizerDir = cfg.tokenizer || modelDir;
  // Created only once the inputs check out (each mode calls ensure()), and removed again if the run fails
  // before writing anything into it.
  const output = new OutputDir(cfg.output_dir);
  try {
    const vocab = model.config.vocabSize;
    // The tokenizer is read once, when something first needs it (a 32k-piece model takes ~0.5 s to load).
    let tokenizer: Tokenizer | null | undefined;
    const tokenizerOf = (): Tokenizer | null => {
      if (tokenizer === undefined) {
        const has = tokenizerDir !== null && tokenizerDir !== '' && ['tokenizer.json', 'tokenizer.model'].some((f) => existsSync(join(tokenizerDir, f)));
        tokenizer = has ? Tokenizer.fromDir(tokenizerDir as string) : null;
      }
      return tokenizer;
    };
    const setupFor = (records: Records): void => {
      const tok = tokenizerOf();
      if (tok) {
        validateRecordsFor(records, { tokenizerIdentity: tok.identity, earlierIdentities: () => tok.earlierIdentities(), seqLength: records.seqLength, vocabSize: vocab });
      } else if (records.manifest.tokenizer.vocab_size > vocab) {
        validateRecordsFor(records, { tokenizerIdentity: records.manifest.tokenizer.identity, seqLength: records.seqLength, vocabSize: vocab });
      }
    };

    const generation = cfg.generation;
    const genOpts = {
      maxNewTokens: generation.max_new_tokens,
      doSample: generation.do_sample,
      topK: generation.top_k,
      topP: generation.top_p,
      temperature: generation.temperature,
      repetitionPenalty: generation.repetition_penalty,
      batchSize: generation.batch_size,
      seed: cfg.seed,
    };
    const needTokenizer = (what: string): Tokenizer => {
      const tok = tokenizerOf();
      if (!tok) throw new ConfigError(`${what} needs a tokenizer`, { where: 'tokenizer', hint: 'set tokenizer: DIR, or load a checkpoint that has its tokenizer files' });
      return tok;
    };

    if (mode === 'eval') {
      const records = openDataset(cfg.eval_dataset.dataset_dir, 'eval_dataset');
      try {
        setupFor(records);
        output.ensure();
        const src = new RecordsBatchSource(records, { batchSize: cfg.runner_config.batch_size, shuffle: false, dropRemainder: false, seed: cfg.seed });
        const result = autocast(cfg.model.dtype, () => evaluateLoss(model, src));
        const json: Record<string, number> = { loss: result.loss, perplexity: result.perplexity, tokens: result.tokens };
        const genMetrics = cfg.callbacks.eval.metrics.filter((m): m is MetricName => m !== 'perplexity');
        if (genMetrics.length > 0) {
          const tok = needTokenizer('generation metrics');
          const examples = examplesFromRecords(records, tok);
          const r = autocast(cfg.model.dtype, () => evaluateGeneration(model, tok, examples, { ...genOpts, metrics: genMetrics, eosTokenIds: defaultEosIds(model, tok) }));
          Object.assign(json, r.metrics);
        }
        if (pg.rank === 0) {
          writeFileAtomicSync(join(cfg.output_dir, 'eval_results.json'), `${JSON.stringify(json, null, 2)}\n`);
          console.log(JSON.stringify(json));
        }
      } finally {
        records.close();
      }
      return;
    }
    if (mode === 'predict') {
      const data = flags.predict_data;
      if (!data) throw new ConfigError('run_mode predict needs --predict_data (a prompt, or a file with one prompt per line)', { where: '--predict_data' });
      const prompts = existsSync(data) && statSync(data).isFile() ? readFileSync(data, 'utf8').split('\n').filter((l) => l.trim() !== '') : [data];
      const tok = needTokenizer('predict');
      output.ensure();
      // The template recorded with the training data unless one is configured (and its Alpaca wrapping).
      const tpl = generationTemplate(generation.template, modelDir);
      if (tpl.source !== 'config') out.line(`template: ${tpl.template}${tpl.alpacaPrompts ? ' with Alpaca prompts' : ''} (${tpl.source === 'recorded' ? `recorded with the training data, ${tpl.manifest}` : 'default'})`);
      const ids = prompts.map((p) => promptIds(tok, tpl.template, trainedUserMessage(p, tpl)));
      const eos = defaultEosIds(model, tok);
      const gens = autocast(cfg.model.dtype, () => generate(model, ids, { ...genOpts, eosTokenIds: eos, padTokenId: tok.padId ?? eos[0] ?? 0 }));
      const lines = gens.map((g, i) => ({ prompt: prompts[i] as string, output: generationText(tok, g) }));
      if (pg.rank === 0) {
        writeFileAtomicSync(join(cfg.output_dir, 'predict_results.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
        for (const l of lines) console.log(`${l.prompt}\n=> ${l.output}\n`);
      }
      return;
    }

    const records = openDataset(cfg.train_dataset.dataset_dir, 'train_dataset');
    const evalRecords = cfg.callbacks.eval.do_eval ? openDataset(cfg.eval_dataset.dataset_dir, 'eval_dataset') : null;
    try {
      setupFor(records);
      if (evalRecords) setupFor(evalRecords);
      const bytes = estimateBytes(model, cfg, records.seqLength);
      const frozen = frozenSet(model.params.names, cfg.freeze);
      const count = (names: readonly string[]): number => names.reduce((n, k) => n + model.params.get(k).size, 0);
      const total = count(model.params.names);
      const trainable = count(model.params.names.filter((n) => !frozen.has(n)));
      out.line(`model: ${model.config.modelType}, ${total.toLocaleString('en-US')} parameters, ${trainable.toLocaleString('en-US')} trainable${frozen.size > 0 ? ` (${frozen.size} tensors frozen)` : ''}`);
      out.line(`estimated peak memory: ${(bytes / 2 ** 30).toFixed(2)} GiB (available: ${(freemem() / 2 ** 30).toFixed(1)} of ${(totalmem() / 2 ** 30).toFixed(1)} GiB)`);
      if (bytes > freemem() && !flags.force) {
        throw new ConfigError(`training needs about ${(bytes / 2 ** 30).toFixed(1)} GiB, more than the ${(freemem() / 2 ** 30).toFixed(1)} GiB available`, {
          hint: 'lower batch_size, enable model.recompute, or pass --force',
        });
      }
      output.ensure();
      const train = new RecordsBatchSource(records, {
        batchSize: cfg.runner_config.batch_size,
        shuffle: cfg.train_dataset.shuffle,
        dropRemainder: cfg.train_dataset.drop_remainder,
        seed: cfg.seed,
        rank: pg.rank,
        worldSize: pg.size,
      });
      if (pg.size > 1) out.line(`data parallel: ${pg.size} ranks × batch ${cfg.runner_config.batch_size}${cfg.parallel_config.optimizer_shard ? ', optimizer state sharded (ZeRO-1)' : ''}`);
      const evalSource = evalRecords ? new RecordsBatchSource(evalRecords, { batchSize: cfg.runner_config.batch_size, shuffle: false, dropRemainder: false, seed: cfg.seed }) : null;
      trainer = new Trainer({
        config: cfg,
        model,
        train,
        evalSource,
        assetsDir: tokenizerDir ? resolve(tokenizerDir) : null,
        resume,
        pg,
        events: {
          step: (s) => out.step(s, cfg.callbacks.loss_monitor.log_every),
          eval: (step, r) => out.line(`eval at step ${step}: loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(3)}  (${r.tokens} tokens)`),
          checkpoint: (dir) => out.line(`checkpoint: ${dir}`),
          warn: (m) => out.line(`warning: ${m}`),
          note: (m) => out.line(m),
        },
      });
      if (stops?.signal) trainer.requestStop(`received ${stops.signal}`, stopExitCode(stops.signal));
      if (flags.profile) startProfile();
      const summary = await trainer.run();
      if (flags.profile) {
        stopProfile();
        out.line(`native time by kernel (per optimizer step, over ${summary.steps} steps):\n${formatProfile(profileRows(), Math.max(1, summary.steps))}`);
      }
      if (summary.stoppedEarly) {
        let saved = 'nothing saved, it stopped before its first step';
        if (summary.lastCheckpoint) saved = `saved ${summary.lastCheckpoint}; continue with --resume_training`;
        else if (resume) saved = 'nothing new to save; continue with --resume_training';
        out.line(`stopped after step ${summary.steps} (${summary.stopReason}): ${saved}`);
        // Every rank agreed on this stop and wrote its part of the checkpoint: end together, with 128 + signal.
        exitTogether(summary.stopCode ?? 1);
      } else {
        out.line(`done: ${summary.steps} steps, last loss ${summary.lastLoss.toFixed(4)}${summary.lastCheckpoint ? `, checkpoint ${summary.lastCheckpoint}` : ''}`);
      }
    } finally {
      records.close();
      evalRecords?.close();
    }
  } catch (err) {
    output.removeIfUnused();
    throw err;
  } finally {
    stops?.dispose();
    model.release();
  }
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('train, fine-tune, evaluate or predict (MindFormers run_mindformer.py)')
    .option('--config <file>', 'YAML run config (configs/...)')
    .option('--run_mode <mode>', 'train | finetune | eval | predict')
    .option('--load_checkpoint <path>', 'model checkpoint, training checkpoint, checkpoint/ root, HF folder, hub repo id, or a MindFormers .ckpt (config.json beside it or in --model.arch)')
    .option('--train_dataset_dir <dir>', 'token records for training (sftkit data preprocess)')
    .option('--eval_dataset_dir <dir>', 'token records for evaluation')
    .option('--do_eval', 'evaluate every callbacks.eval.eval_steps steps')
    .option('--resume_training [name]', 'continue from the latest (or the named) checkpoint under output_dir/checkpoint')
    .option('--output_dir <dir>', 'where checkpoints, metrics and results go')
    .option('--epochs <n>', 'epochs')
    .option('--batch_size <n>', 'rows per batch')
    .option('--gradient_accumulation_steps <n>', 'micro-batches per optimizer step')
    .option('--seed <n>', 'seed of initialisation and shuffling')
    .option('--use_parallel', 'MindFormers compatibility: parallel runs go through `sftkit launch`')
    .option('--predict_data <text|file>', 'a prompt, or a file with one prompt per line')
    .option('--predict_batch_size <n>', 'prompts decoded together')
    .option('--template <name>', 'chat template for predict (none for raw text; default: the one recorded with the training data, else vicuna)')
    .option('--max_new_tokens <n>', 'tokens to generate')
    .option('--do_sample', 'sample instead of greedy decoding')
    .option('--top_k <k>', 'top-k sampling')
    .option('--top_p <p>', 'nucleus sampling')
    .option('--temperature <t>', 'sampling temperature')
    .option('--force', 'train even when the memory estimate exceeds free memory')
    .option('--profile', 'after training, print the native time per kernel per step')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action(async (opts: RunFlags, command: Command) => {
      const flags = { ...opts, usePar: opts['use_parallel'] === true };
      await run(flags, command.args);
    });
}
