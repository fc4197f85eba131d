// `sftkit demo` (npm start): the whole SFT workflow on the bundled assets, with a report under output/.
import type { Command } from 'commander';
import { host } from '../../backend/host.ts';
import { ConfigError } from '../../errors.ts';
import { runDemo } from '../demo/pipeline.ts';
import { StepPrinter } from '../progress.ts';

interface DemoFlags {
  output_dir: string;
  train_samples?: string;
  eval_samples?: string;
  epochs?: string;
  config?: string;
}

function positive(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`--${name} must be a positive integer (got ${v})`, { where: `--${name}` });
  return n;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the end-to-end SFT demo on the bundled assets (convert, data, evaluate, fine-tune, evaluate, predict)')
    .option('--output_dir <dir>', 'where everything is written', 'output')
    .option('--train_samples <n>', 'use only the first N training samples (a shorter run)')
    .option('--eval_samples <n>', 'use only the first N held-out samples')
    .option('--epochs <n>', 'fine-tuning epochs (default: configs/demo/finetune.yaml)')
    .option('--config <yaml>', 'the fine-tuning recipe (default configs/demo/finetune.yaml; configs/demo/finetune_lora.yaml trains LoRA adapters)')
    .action(async (flags: DemoFlags) => {
      const isa = ['scalar', 'AVX2+FMA', 'AVX-512'][host.detectedIsa()] ?? 'unknown';
      const print = new StepPrinter();
      print.line(`sftkit demo: MindFormers-style SFT on bundled assets (${host.getThreads()} threads, ${isa} kernels)`);
      const t0 = performance.now();
      const report = await runDemo({
        outputDir: flags.output_dir,
        trainSamples: positive('train_samples', flags.train_samples),
        evalSamples: positive('eval_samples', flags.eval_samples),
        epochs: positive('epochs', flags.epochs),
        ...(flags.config !== undefined ? { configPath: flags.config } : {}),
        print,
      });
      print.line(
        `\nheld-out exact match: base ${(100 * report.before.em).toFixed(1)}%, fine-tuned ${(100 * report.after.em).toFixed(1)}%, ` +
          `majority answer ${(100 * report.majority.em).toFixed(1)}%`,
      );
      print.line(`total ${((performance.now() - t0) / 1000).toFixed(0)} s; report: ${flags.output_dir}/report.md`);
    });
}
