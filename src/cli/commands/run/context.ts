// What every `sftkit run` mode starts from: the process group and its rank-0 printer, graceful stops, the
// model (a checkpoint to resume, --load_checkpoint, or model.arch), the tokenizer read on first use, the output folder.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MANIFEST_NAME, openRecords, readRecordsManifest } from '../../../data/records.ts';
import { type RowStore, validateRowsFor } from '../../../data/row-store.ts';
import { type ProcessGroup, initProcessGroup } from '../../../distributed/index.ts';
import { ConfigError } from '../../../errors.ts';
import { type BaseModelRef, hasTokenizerFiles, resolveCheckpointDir } from '../../../formats/checkpoint-dir.ts';
import type { GenerationOptions } from '../../../generate/index.ts';
import { resolveModelDir } from '../../../hub/index.ts';
import { readModelConfig } from '../../../models/config.ts';
import type { CausalLM } from '../../../models/model.ts';
import { Tokenizer } from '../../../tokenizer/index.ts';
import { type LoadedCheckpoint, findResumeCheckpoint } from '../../../train/checkpoint.ts';
import type { RunConfig } from '../../../train/config.ts';
import { MindRecordRows } from '../../../data/mindrecord-rows.ts';
import { type LoadOptions, createModel, loadModel, weightOptionsOf } from '../../../train/model-io.ts';
import { adapterCheckpointBase, attachLoraFor, baseDirOf, loraOn, modelFolderOf } from '../../../train/lora-io.ts';
import { ckptConfigDir, isMindSporeCkpt, loadMindSporeModel } from '../../../convert/mindspore-convert.ts';
import { expectedTensors } from '../../../models/tensor-table.ts';
import type { ModelConfig } from '../../../models/config.ts';
import { bf16GemmPath } from '../../../tensor/index.ts';
import { OutputDir } from '../../output-dir.ts';
import { checkPlannedMemory } from './memory.ts';
import { confinedRealPath } from '../../../formats/confined-file.ts';
import { StepPrinter } from '../../progress.ts';
import { type StopSignal, StopWatch, stopTimeoutSeconds } from '../../stop-signals.ts';

export interface RunFlags {
  config?: string;
  force?: boolean;
  profile?: boolean;
  usePar?: boolean;
  predict_data?: string;
  [key: string]: unknown;
}

/** A sink for the output of ranks other than 0. */
function quietStream(): NodeJS.WriteStream {
  return { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;
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

/** config.json for the memory check before loading; null when it cannot be read (loading then says why). */
function plannedModelConfig(path: string): ModelConfig | null {
  try {
    confinedRealPath(path);
    return readModelConfig(path);
  } catch {
    return null;
  }
}

/**
 * The training records' seq_length from their manifest alone (the rows are opened once, after loading); null
 * when there is none to read (MindRecord, a missing folder: the check after loading, or the run, says why).
 */
function trainSeqLength(cfg: RunConfig): number | null {
  const dir = cfg.train_dataset.dataset_dir;
  if (!dir || !existsSync(join(dir, MANIFEST_NAME))) return null;
  try {
    return readRecordsManifest(dir).seq_length;
  } catch {
    return null;
  }
}

/** A new model (run_mode train) with the run's frozen weights in the frozen store. */
function createModelFor(config: ModelConfig, cfg: RunConfig, pg: ProcessGroup): CausalLM {
  const names = expectedTensors(config).filter((t) => t.optional !== 'tied').map((t) => t.name);
  return createModel(config, cfg.seed, weightOptionsOf(cfg, names, pg));
}

/** Token records of `train_dataset` or `eval_dataset`, opened as the loader's row store. */
export function openDataset(dir: string, what: 'train_dataset' | 'eval_dataset'): RowStore {
  if (!dir) throw new ConfigError(`${what}.dataset_dir is not set`, { where: `${what}.dataset_dir`, hint: `pass --${what}_dir DIR (the output of sftkit data preprocess)` });
  // A MindFormers MindRecord file (or a folder holding one) trains directly; anything else is token records.
  const mindrecord = dir.endsWith('.mindrecord') ? dir : existsSync(dir) && statSync(dir).isDirectory() ? readdirSync(dir).filter((f) => f.endsWith('.mindrecord')).sort()[0] : undefined;
  if (mindrecord !== undefined && !existsSync(join(dir, 'manifest.json'))) {
    return MindRecordRows.open(mindrecord === dir ? dir : join(dir, mindrecord));
  }
  return openRecords(dir);
}

/**
 * A LoRA run's frozen base. A checkpoint that holds only its adapter (resumed, or given as --load_checkpoint)
 * names its base: that folder is loaded (on resume --load_checkpoint, when given, names another copy of it) and
 * `adapterCheckpoint` is the checkpoint whose adapter goes on it. A new LoRA training run's base is the folder
 * --load_checkpoint resolved to (a hub repo id keeps its id as the name). Null where there is no such base (no
 * LoRA, a model from model.arch or a MindSpore .ckpt: their LoRA checkpoints store the base's weights too).
 */
async function loraBaseOf(
  cfg: RunConfig,
  at: { modelDir: string | null; resume: LoadedCheckpoint | null; training: boolean; note: (m: string) => void },
): Promise<{ base: BaseModelRef | null; adapterCheckpoint: string | null }> {
  const recorded = at.modelDir !== null ? adapterCheckpointBase(at.modelDir) : null;
  if (at.modelDir !== null && recorded !== null) {
    // The base named as it was recorded (a config's own load_checkpoint) is the recorded folder while it is there: no new hub lookup.
    const sameAsRecorded = cfg.load_checkpoint === recorded.name_or_path && existsSync(join(recorded.dir, 'config.json'));
    if (at.resume !== null && cfg.load_checkpoint && !sameAsRecorded) {
      const base = { name_or_path: cfg.load_checkpoint, dir: resolve(await modelDirOf(cfg.load_checkpoint)) };
      if (base.dir !== recorded.dir) at.note(`LoRA base: ${base.dir} (--load_checkpoint) instead of the recorded ${recorded.dir}`);
      return { base, adapterCheckpoint: at.modelDir };
    }
    return { base: { ...recorded, dir: baseDirOf(at.modelDir, recorded) }, adapterCheckpoint: at.modelDir };
  }
  // eval and predict on the checkpoint of a LoRA run whose base had no folder (it holds the base's weights beside
  // its adapter) apply its adapter, as chat and serve do (modelFolderOf).
  if (!at.training && at.modelDir !== null && modelFolderOf(at.modelDir).adapterDir !== null) return { base: null, adapterCheckpoint: at.modelDir };
  if (at.training && at.resume === null && at.modelDir !== null && cfg.load_checkpoint && loraOn(cfg)) {
    return { base: { name_or_path: cfg.load_checkpoint, dir: resolve(at.modelDir) }, adapterCheckpoint: null };
  }
  return { base: null, adapterCheckpoint: null };
}

export class RunContext {
  /** Created only once a mode's inputs check out (it calls ensure()), and removed again if the run fails before writing into it. */
  readonly output: OutputDir;
  /** Set by the training mode: what a stop signal does to its trainer. */
  onStop: ((sig: StopSignal) => void) | null = null;
  // The tokenizer is read once, when something first needs it (a 32k-piece model takes ~0.5 s to load).
  private tokenizerRead: Tokenizer | null | undefined;

  private constructor(
    readonly cfg: RunConfig,
    readonly flags: RunFlags,
    readonly pg: ProcessGroup,
    /** Prints on rank 0 only; every rank logs to its own worker_<r>.log through the launcher anyway. */
    readonly out: StepPrinter,
    readonly stops: StopWatch | null,
    readonly model: CausalLM,
    /** The checkpoint or HF folder the model came from; null when it was made from model.arch. */
    readonly modelDir: string | null,
    readonly resume: LoadedCheckpoint | null,
    /** A LoRA run's frozen base (where it was loaded from): the run's checkpoints refer to it instead of storing it. */
    readonly base: BaseModelRef | null,
  ) {
    this.output = new OutputDir(cfg.output_dir);
  }

  static async open(cfg: RunConfig, flags: RunFlags): Promise<RunContext> {
    const dp = cfg.parallel_config.data_parallel;
    const pg = initProcessGroup(dp === 'auto' ? {} : { worldSize: dp });
    const out = new StepPrinter(pg.rank === 0 ? process.stdout : quietStream());
    if (cfg.model.dtype === 'bfloat16') {
      out.line(`model.dtype bfloat16: mixed precision, GEMMs on ${bf16GemmPath()}; weights, optimizer state and checkpoints stay fp32`);
    }
    if (flags.usePar) out.line('note: --use_parallel is implied by `sftkit launch`; this process trains alone');
    // Training stops gracefully on SIGINT, SIGTERM and SIGUSR1, from now on: a signal forwarded by the launcher
    // while the model loads must not kill a rank (or open Node's inspector, SIGUSR1's default).
    const mode = cfg.run_mode;
    let ctx: RunContext | null = null;
    const stops =
      mode === 'train' || mode === 'finetune'
        ? new StopWatch({ onStop: (sig) => ctx?.onStop?.(sig), print: (l) => out.line(l), timeoutSeconds: stopTimeoutSeconds() })
        : null;
    try {
      // The model: from the checkpoint to resume, --load_checkpoint, or model.arch (train from scratch).
      let resume: LoadedCheckpoint | null = null;
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
      // Training builds the model with its frozen weights already in the frozen store (freeze, model.base_dtype).
      const training = mode === 'train' || mode === 'finetune';
      const { base, adapterCheckpoint } = await loraBaseOf(cfg, { modelDir: mindsporeCkpt === null ? modelDir : null, resume, training, note: (m) => out.line(m) });
      // eval and predict keep every weight frozen at model.base_dtype when it is not float32 (a bf16 or NF4 base
      // reads its linears panel by panel, as training does), so a 7B model generates in a fraction of fp32's memory.
      // At zero_stage 3 each rank allocates and loads only its shard of the trainable weights.
      const lowPrecision = cfg.model.base_dtype !== 'float32';
      const loadOpts: LoadOptions = training
        ? { weights: (names) => weightOptionsOf(cfg, names, pg) }
        : lowPrecision
          ? { weights: () => ({ frozen: () => true, frozenDtype: cfg.model.base_dtype }) }
          : {};
      const weightsDir = adapterCheckpoint !== null && base !== null ? base.dir : modelDir;
      // A run whose estimate exceeds the free memory is refused before the model loads (a 7B model in fp32 would
      // be killed by the kernel halfway through loading), with the cheapest setting that fits.
      if (training && !flags.force) {
        const dir = mindsporeCkpt !== null ? modelDir : weightsDir;
        const planned = plannedModelConfig(dir ? join(dir, 'config.json') : archConfigPath(cfg.model.arch));
        const seq = trainSeqLength(cfg);
        if (planned && seq !== null) checkPlannedMemory(cfg, planned, seq, pg.size);
      }
      const model =
        mindsporeCkpt !== null && modelDir !== null
          ? loadMindSporeModel(mindsporeCkpt, modelDir, cfg.seed, loadOpts)
          : weightsDir
            ? loadModel(weightsDir, cfg.seed, loadOpts)
            : createModelFor(readModelConfig(archConfigPath(cfg.model.arch)), cfg, pg);
      // LoRA: the adapter of the checkpoint resumed (or loaded), lora.adapter (a PEFT folder), or new adapters (lora.rank).
      attachLoraFor(model, cfg, { checkpointDir: resume?.dir ?? adapterCheckpoint, training });
      ctx = new RunContext(cfg, flags, pg, out, stops, model, modelDir, resume, base);
      return ctx;
    } catch (err) {
      stops?.dispose();
      throw err;
    }
  }

  /** Where the tokenizer files come from: `tokenizer:`, else the model's folder (for an adapter without them, its base's). */
  get tokenizerDir(): string | null {
    if (this.cfg.tokenizer) return this.cfg.tokenizer;
    const dir = this.modelDir;
    if (dir !== null && this.base !== null && !hasTokenizerFiles(dir)) return this.base.dir;
    return dir;
  }

  /** The tokenizer, or null when neither `tokenizer:` nor the model's folder has tokenizer files. */
  tokenizer(): Tokenizer | null {
    if (this.tokenizerRead === undefined) {
      const dir = this.tokenizerDir;
      const has = dir !== null && dir !== '' && hasTokenizerFiles(dir);
      this.tokenizerRead = has ? Tokenizer.fromDir(dir as string) : null;
    }
    return this.tokenizerRead;
  }

  needTokenizer(what: string): Tokenizer {
    const tok = this.tokenizer();
    if (!tok) throw new ConfigError(`${what} needs a tokenizer`, { where: 'tokenizer', hint: 'set tokenizer: DIR, or load a checkpoint that has its tokenizer files' });
    return tok;
  }

  /** Rows must come from the model's tokenizer (when it is known) and fit its vocabulary. */
  checkRows(rows: RowStore): void {
    const vocab = this.model.config.vocabSize;
    const tok = this.tokenizer();
    if (tok) {
      validateRowsFor(rows, { tokenizerIdentity: tok.identity, earlierIdentities: () => tok.earlierIdentities(), seqLength: rows.seqLength, vocabSize: vocab });
    } else if (rows.tokenizer.vocabSize > vocab || rows.maxTokenId >= vocab) {
      validateRowsFor(rows, { tokenizerIdentity: rows.tokenizer.identity, seqLength: rows.seqLength, vocabSize: vocab });
    }
    if (rows.tokenizer.identity === '') {
      this.out.line(`note: ${rows.source} does not record its tokenizer (MindRecord): only its token ids (up to ${rows.maxTokenId}) were checked against the model's vocabulary of ${vocab}`);
    }
  }

  /** The `generation:` section as generate()'s options (eval's generation metrics and predict). */
  generationOptions(): Omit<GenerationOptions, 'eosTokenIds'> {
    const g = this.cfg.generation;
    return {
      maxNewTokens: g.max_new_tokens,
      doSample: g.do_sample,
      topK: g.top_k,
      topP: g.top_p,
      temperature: g.temperature,
      repetitionPenalty: g.repetition_penalty,
      batchSize: g.batch_size,
      seed: this.cfg.seed,
    };
  }

  close(): void {
    this.stops?.dispose();
    this.model.release();
  }
}
