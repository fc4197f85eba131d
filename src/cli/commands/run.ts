// `sftkit run`: MindFormers' run_mindformer.py — train, finetune, eval or predict from a YAML config,
// with flags and dotted overrides (--optimizer.learning_rate 2e-5) mapped onto config keys.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError } from '../../errors.ts';
import { type RunConfig, applyOverrides, describeConfigKeys, loadRunConfig, parseRunConfig, parseValue } from '../../train/config.ts';
import { RunContext, type RunFlags } from './run/context.ts';
import { runEval } from './run/eval.ts';
import { runPredict } from './run/predict.ts';
import { runTraining } from './run/train.ts';

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

/** `run --help`'s list of every config key, its default, what it takes and its flag, made from the schema. */
export function configKeysHelp(): string {
  const flagOf = new Map(Object.entries(FLAG_KEYS).map(([flag, key]) => [key, `--${flag}`]));
  const rows = describeConfigKeys().map((k) => [k.key, k.default === undefined ? '(unset)' : JSON.stringify(k.default), k.kind, flagOf.get(k.key) ?? '']);
  const widths = [0, 1].map((c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  const lines = rows.map((r) => `  ${(r[0] as string).padEnd(widths[0] as number)}  ${(r[1] as string).padEnd(widths[1] as number)}  ${r[2]}${r[3] ? `  (${r[3]})` : ''}`.trimEnd());
  return [
    '',
    'Config keys: the sections of a --config YAML file. Any key can be set from the command line as a dotted',
    'override, --section.key VALUE (e.g. --optimizer.learning_rate 2e-5 --runner_config.max_steps 100):',
    `  ${'key'.padEnd(widths[0] as number)}  ${'default'.padEnd(widths[1] as number)}  values  (flag)`,
    ...lines,
  ].join('\n');
}

/** One function per run mode; train and finetune differ only in where the model comes from (RunContext.open). */
const RUN_MODES: Record<RunConfig['run_mode'], (ctx: RunContext) => Promise<void>> = {
  train: runTraining,
  finetune: runTraining,
  eval: runEval,
  predict: runPredict,
};

async function run(flags: RunFlags, rest: string[]): Promise<void> {
  const cfg = buildRunConfig(flags, rest);
  const ctx = await RunContext.open(cfg, flags);
  try {
    await RUN_MODES[cfg.run_mode](ctx);
  } catch (err) {
    ctx.output.removeIfUnused();
    throw err;
  } finally {
    ctx.close();
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
    .addHelpText('after', () => configKeysHelp())
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action(async (opts: RunFlags, command: Command) => {
      const flags = { ...opts, usePar: opts['use_parallel'] === true };
      await run(flags, command.args);
    });
}
