// `sftkit data alpaca` (MindFormers' alpaca_converter) and `sftkit data preprocess` (its llama_preprocess).
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { convertAlpacaFile, formatReport, modelMaxPositions, parseInputSpec, preprocess, preprocessToMindRecord, type DatasetType, type MixStrategy, type TemplateName } from '../../data/index.ts';
import { ConfigError } from '../../errors.ts';
import { resolveModelDir } from '../../hub/index.ts';
import { Tokenizer } from '../../tokenizer/index.ts';

interface AlpacaFlags {
  data_path?: string;
  output_path?: string;
  force?: boolean;
}

interface PreprocessFlags {
  dataset_type: string;
  input_glob?: string;
  input: string[];
  mix_strategy?: string;
  seed?: string;
  model_file?: string;
  tokenizer?: string;
  seq_length?: string;
  output_file?: string;
  template?: string;
  packing?: boolean;
  truncation: string;
  samples_num?: string;
  repeat: string;
  force?: boolean;
  output_format: string;
}

function int(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a positive integer (got ${value})`, { where: flag });
  return n;
}

function required<T>(flag: string, value: T | undefined): T {
  if (value === undefined) throw new ConfigError(`data: ${flag} is required`, { where: flag });
  return value;
}

export function registerData(program: Command): void {
  const data = program.command('data').description('prepare training data: alpaca conversion and token records');
  data
    .command('alpaca')
    .description('convert Stanford Alpaca records (JSON array or JSONL) to MindFormers conversations')
    .option('--data_path <file>', 'alpaca_data.json: [{instruction, input, output}]')
    .option('--output_path <file>', 'the conversation JSON to write')
    .option('--force', 'overwrite an existing --output_path')
    .action((flags: AlpacaFlags) => {
      const dataPath = required('--data_path', flags.data_path);
      const outputPath = required('--output_path', flags.output_path);
      const r = convertAlpacaFile(dataPath, outputPath, { force: flags.force === true });
      console.log(`wrote ${r.samples} conversations (${r.withInput} with input) to ${outputPath}`);
    });
  data
    .command('preprocess')
    .description('tokenize conversations (qa) or text (wiki, text) into token records of seq_length + 1')
    .option('--dataset_type <type>', 'qa | wiki | text', 'qa')
    .option('--input_glob <glob>', 'input file(s): conversations (JSON array, JSONL or Parquet) for qa; text files, or JSONL / Parquet with a "text" field, for wiki/text')
    .option('--input <path[:weight]>', 'an input source (file or glob), repeatable; with weights (a.jsonl:0.7 --input b.parquet:0.3) the sources are mixed', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--mix_strategy <s>', 'several --input: concat | interleave_under (stop when a source runs out) | interleave_over (oversample until every source has run out); default interleave_under with weights, else concat')
    .option('--seed <n>', 'seed of the weighted mix (default 0)')
    .option('--model_file <path>', 'a SentencePiece tokenizer.model (with the tokenizer_config.json beside it, if any)')
    .option('--tokenizer <dir>', 'a model folder with tokenizer.model or tokenizer.json (and tokenizer_config.json)')
    .option('--seq_length <n>', 'tokens per training sample (rows hold seq_length + 1)')
    .option('--output_file <path>', 'the token records directory to write (with --output_format mindrecord: the MindRecord file; its index goes to <path>.db)')
    .option('--output_format <format>', 'records (sftkit token records) | mindrecord (MindFormers\' llama_preprocess.py layout)', 'records')
    .option('--template <name>', 'qa chat template: vicuna | alpaca | chatml | llama2 | hf (default vicuna)')
    .option('--packing', 'pack several samples per row with segment ids')
    .option('--truncation <mode>', 'samples longer than a row: right (cut) | drop', 'right')
    .option('--samples_num <n>', 'use only the first N samples of the input')
    .option('--repeat <k>', 'pass over the input K times', '1')
    .option('--force', 'replace existing token records at --output_file (once the new ones are complete)')
    .action(async (flags: PreprocessFlags) => {
      if ((flags.model_file === undefined) === (flags.tokenizer === undefined)) {
        throw new ConfigError('data preprocess: give exactly one of --model_file PATH or --tokenizer DIR', { where: '--model_file' });
      }
      const modelDir = flags.model_file !== undefined ? dirname(flags.model_file) : (await resolveModelDir(flags.tokenizer as string)).path;
      const tokenizer = flags.model_file !== undefined ? Tokenizer.fromModelFile(flags.model_file) : Tokenizer.fromDir(modelDir);
      const output = required('--output_file', flags.output_file);
      if (flags.output_format !== 'records' && flags.output_format !== 'mindrecord') {
        throw new ConfigError(`--output_format must be records or mindrecord (got ${flags.output_format})`, { where: '--output_format' });
      }
      const seqLength = required('--seq_length', int('--seq_length', flags.seq_length));
      // Rows longer than the model's positions train positions it never learned: training refuses them unless
      // rope scaling is set, so say it now, before the preprocessing time is spent.
      const max = modelMaxPositions(modelDir);
      if (max !== null && seqLength > max.value) {
        console.warn(`warning: --seq_length ${seqLength} is above the model's ${max.field} ${max.value} (${max.file}); training refuses such rows unless rope scaling is set`);
      }
      if (flags.input_glob !== undefined && flags.input.length > 0) throw new ConfigError('data preprocess: give --input_glob or --input, not both', { where: '--input' });
      const seed = flags.seed === undefined ? undefined : Number(flags.seed);
      if (seed !== undefined && !Number.isSafeInteger(seed)) throw new ConfigError(`--seed must be an integer (got ${flags.seed})`, { where: '--seed' });
      const started = Date.now();
      const run = flags.output_format === 'mindrecord' ? preprocessToMindRecord : preprocess;
      const { report } = await run({
        datasetType: flags.dataset_type as DatasetType,
        ...(flags.input.length > 0 ? { inputs: flags.input.map(parseInputSpec) } : { inputGlob: required('--input_glob', flags.input_glob) }),
        ...(flags.mix_strategy !== undefined ? { mixStrategy: flags.mix_strategy as MixStrategy } : {}),
        ...(seed !== undefined ? { seed } : {}),
        tokenizer,
        seqLength,
        outputDir: output,
        ...(flags.template !== undefined ? { template: flags.template as TemplateName } : {}),
        packing: flags.packing === true,
        truncation: flags.truncation as 'right' | 'drop',
        ...(flags.samples_num !== undefined ? { samplesNum: int('--samples_num', flags.samples_num) as number } : {}),
        repeat: int('--repeat', flags.repeat) as number,
        force: flags.force === true,
        ...(process.stderr.isTTY ? { onProgress: (n: number) => process.stderr.write(`\r${n} samples`) } : {}),
      });
      if (process.stderr.isTTY) process.stderr.write('\r');
      console.log(formatReport(report));
      console.log(`wrote ${report.rows_out} rows to ${output} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    });
}
