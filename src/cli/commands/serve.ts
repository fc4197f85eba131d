// `sftkit serve`: an OpenAI-compatible HTTP server (chat completions, completions, models, health) over a
// checkpoint, HF folder or hub repo id, with continuous batching. Binds 127.0.0.1 unless told otherwise, and
// any other address needs an API key. A LoRA run's checkpoint is served as an adapter over the base it records.
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { generationTemplate } from '../../data/recorded-template.ts';
import { ConfigError } from '../../errors.ts';
import { createEngine } from '../../serve/engine.ts';
import { type AdapterSpec, ModelRegistry } from '../../serve/registry.ts';
import { startServer } from '../../serve/server.ts';
import { Tokenizer } from '../../tokenizer/index.ts';
import { hasTokenizerFiles } from '../../formats/checkpoint-dir.ts';
import { type ModelFolder, modelFolderOf } from '../../train/lora-io.ts';
import { loadModel } from '../../train/model-io.ts';
import { modelDirOf } from './run/context.ts';

interface ServeFlags {
  load_checkpoint: string;
  base_model?: string;
  tokenizer?: string;
  template?: string;
  host: string;
  port: string;
  api_key?: string;
  adapter: string[];
  served_model_name?: string;
  max_batch: string;
  max_queue: string;
  context?: string;
  dtype: string;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function intFlag(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new ConfigError(`${flag} ${JSON.stringify(value)} is not an integer`, { where: flag });
  return n;
}

/**
 * The ids a server answers to. A model folder is served as `modelId` with the --adapter adapters over it. An
 * adapter-only checkpoint's adapter is served as `modelId` over its base, which is served under the name the
 * run gave it (its folder's name, or a hub repo id), or `<modelId>-base` where that is modelId itself or the
 * checkpoint holds the base's weights too (a run whose base had no folder).
 */
function servedModels(folder: ModelFolder, modelId: string, extra: AdapterSpec[]): { baseId: string; adapters: AdapterSpec[] } {
  if (folder.adapterDir === null) return { baseId: modelId, adapters: extra };
  // A hub repo's snapshot folder is named by its commit: the base then goes by the repo id the run named.
  const named = folder.base?.name_or_path ?? null;
  const hub = named !== null && !existsSync(named) && /[\\/]snapshots[\\/][^\\/]+$/.test(folder.weightsDir);
  const own = named === null ? modelId : hub ? named : basename(folder.weightsDir);
  const baseId = own === modelId ? `${modelId}-base` : own;
  const clash = extra.find((a) => a.name === baseId);
  if (clash) throw new ConfigError(`--adapter ${clash.name}=${clash.dir}: ${JSON.stringify(baseId)} is the id of the LoRA checkpoint's base`, { where: '--adapter', hint: 'give the adapter another name' });
  return { baseId, adapters: [{ name: modelId, dir: folder.adapterDir }, ...extra] };
}

async function serve(flags: ServeFlags): Promise<void> {
  const apiKey = flags.api_key ?? process.env['SFTKIT_API_KEY'] ?? null;
  if (apiKey === '') throw new ConfigError('--api_key is empty', { where: '--api_key' });
  if (!LOOPBACK.has(flags.host) && apiKey === null) {
    throw new ConfigError(`--host ${flags.host} exposes the server beyond this machine: pass --api_key KEY (or set SFTKIT_API_KEY)`, { where: '--host' });
  }
  const port = intFlag(flags.port, '--port');
  if (port < 0 || port > 65535) throw new ConfigError(`--port ${port} is outside 0..65535`, { where: '--port' });
  if (flags.dtype !== 'float32' && flags.dtype !== 'bfloat16') throw new ConfigError(`--dtype ${flags.dtype}: float32 or bfloat16`, { where: '--dtype' });
  const modelId = flags.served_model_name ?? (existsSync(flags.load_checkpoint) ? basename(resolve(flags.load_checkpoint)) : flags.load_checkpoint);
  // Adapter flags are checked before anything loads, so a refused one costs nothing.
  const extra = ModelRegistry.parseAdapterSpecs(flags.adapter, modelId);
  const dir = await modelDirOf(flags.load_checkpoint);
  // A LoRA run's adapter-only checkpoint: its recorded base is loaded and served under the base's own name, and
  // the checkpoint's adapter over it as `modelId` (beside any --adapter), as multi-LoRA servers serve adapters.
  const folder = modelFolderOf(dir, `serve another copy of the base: --base_model BASE (or --load_checkpoint BASE --adapter ${modelId}=${dir})`, flags.base_model ?? null);
  const served = servedModels(folder, modelId, extra);
  const tokDir = flags.tokenizer ?? folder.tokenizerDir;
  if (!hasTokenizerFiles(tokDir)) {
    throw new ConfigError(`${tokDir} has no tokenizer.model or tokenizer.json`, { where: '--tokenizer', hint: 'pass --tokenizer DIR' });
  }
  const tok = Tokenizer.fromDir(tokDir);
  const template = generationTemplate(flags.template, dir);
  const model = loadModel(folder.weightsDir);
  let engine;
  try {
    engine = createEngine(model, tok, {
      modelId: served.baseId,
      template,
      slots: intFlag(flags.max_batch, '--max_batch'),
      maxQueue: intFlag(flags.max_queue, '--max_queue'),
      ...(flags.context === undefined ? {} : { context: intFlag(flags.context, '--context') }),
      dtype: flags.dtype,
      adapters: served.adapters,
      // A LoRA checkpoint: its adapter is what the user asked to serve, so /v1/models lists it first.
      ...(folder.adapterDir === null ? {} : { primary: modelId }),
    });
  } catch (err) {
    model.release();
    throw err;
  }
  const server = await startServer(engine, { host: flags.host, port, apiKey, log: (l) => process.stderr.write(`${l}\n`) });
  const { opts } = engine.scheduler;
  const ckptAdapter = folder.adapterDir === null ? 0 : 1;
  const adapters = served.adapters.slice(ckptAdapter).map((a) => JSON.stringify(a.name)).join(', ');
  const base = `${model.config.modelType} from ${folder.weightsDir} as ${JSON.stringify(served.baseId)}`;
  const what = `${folder.adapterDir === null ? '' : `the LoRA checkpoint ${dir} as ${JSON.stringify(modelId)} over its base `}${base}${adapters === '' ? '' : ` with LoRA adapters ${adapters}`}`;
  process.stderr.write(
    `serving ${what}; template ${template.template} (${template.source}); ` +
      `${opts.slots} sequences per batch, context ${opts.context} tokens, queue ${opts.maxQueue}${apiKey === null ? '' : '; API key required'}\n`,
  );
  // The line tests and scripts wait for.
  process.stdout.write(`listening on ${server.url}\n`);
  await new Promise<void>((done) => {
    const stop = (sig: string): void => {
      process.stderr.write(`received ${sig}: shutting down\n`);
      void server.close().then(() => {
        model.release();
        done();
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve a model over an OpenAI-compatible HTTP API with continuous batching')
    .requiredOption('--load_checkpoint <path>', "model checkpoint, training checkpoint, checkpoint/ root, HF folder or hub repo id; a LoRA run's checkpoint is served over its base")
    .option('--base_model <dir>', "with a LoRA run's checkpoint (or a PEFT adapter folder): the local folder of its base model, instead of the one it records")
    .option('--tokenizer <dir>', "tokenizer folder (default: the checkpoint's)")
    .option('--template <name>', 'chat template: vicuna | alpaca | chatml | llama2 | hf | none (default: the one recorded with the training data, else vicuna)')
    .option('--host <addr>', 'address to bind; anything but loopback needs --api_key', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', '8000')
    .option('--api_key <key>', 'require "Authorization: Bearer <key>" (or set SFTKIT_API_KEY)')
    .option('--adapter <name=dir>', 'serve the PEFT LoRA adapter in DIR over the base as model NAME (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--served_model_name <id>', "the model id requests use (default: the checkpoint folder's name or the repo id)")
    .option('--max_batch <n>', 'sequences decoded together', '16')
    .option('--max_queue <n>', 'requests waiting for a slot before 429', '64')
    .option('--context <n>', "tokens per sequence, prompt + generated (default: the model's positions, at most 4096)")
    .option('--dtype <dtype>', 'compute dtype: float32 | bfloat16', 'float32')
    .action(async (flags: ServeFlags) => {
      await serve(flags);
    });
}
