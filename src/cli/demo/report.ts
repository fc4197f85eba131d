// output/report.md of the demo: what was run, the held-out scores before and after fine-tuning against a
// majority-answer baseline, per-task exact match, example predictions, timings.
import type { PreprocessReport } from '../../data/report.ts';
import type { RunConfig } from '../../train/config.ts';
import type { EvalResult } from '../../train/trainer.ts';

export interface DemoScores {
  loss: EvalResult;
  em: number;
  byTask: Record<string, number>;
}

export interface DemoReport {
  baseModel: string;
  params: number;
  trainSamples: number;
  evalSamples: number;
  seqLength: number;
  preprocess: PreprocessReport[];
  before: DemoScores;
  after: DemoScores;
  majority: { answer: string; em: number };
  steps: number;
  finalTrainLoss: number;
  checkpoint: string | null;
  examples: { task: string; instruction: string; input: string; reference: string; before: string; after: string }[];
  timings: { step: string; seconds: number }[];
  config: RunConfig;
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderReport(r: DemoReport): string {
  const tasks = Object.keys(r.after.byTask).sort();
  const total = r.timings.reduce((s, t) => s + t.seconds, 0);
  const c = r.config;
  const lines = [
    '# sftkit demo: supervised fine-tuning report',
    '',
    `A ${(r.params / 1e6).toFixed(2)}M-parameter Llama, pretrained by sftkit on the State of the Union corpus (\`${r.baseModel}\`),`,
    `fine-tuned on ${r.trainSamples} instruction samples (alpaca → vicuna conversations → packed token records of ${r.seqLength} tokens)`,
    `and evaluated on ${r.evalSamples} held-out samples by greedy generation.`,
    '',
    '## Held-out results',
    '',
    '| model | exact match | eval loss | perplexity |',
    '|---|---|---|---|',
    `| majority answer (always "${cell(r.majority.answer)}") | ${pct(r.majority.em)} | | |`,
    `| base model | ${pct(r.before.em)} | ${r.before.loss.loss.toFixed(4)} | ${r.before.loss.perplexity.toFixed(2)} |`,
    `| fine-tuned | **${pct(r.after.em)}** | ${r.after.loss.loss.toFixed(4)} | ${r.after.loss.perplexity.toFixed(2)} |`,
    '',
    `Fine-tuning gained **${(100 * (r.after.em - r.before.em)).toFixed(1)} points** of exact match over the base model and ` +
      `${(100 * (r.after.em - r.majority.em)).toFixed(1)} over the majority answer.`,
    '',
    '### Exact match by task',
    '',
    '| task | base | fine-tuned |',
    '|---|---|---|',
    ...tasks.map((t) => `| ${t} | ${pct(r.before.byTask[t] ?? 0)} | ${pct(r.after.byTask[t] ?? 0)} |`),
    '',
    '## Training',
    '',
    `${r.steps} optimizer steps (${c.runner_config.epochs} epochs, batch ${c.runner_config.batch_size}, AdamW lr ${c.optimizer.learning_rate}, ` +
      `${c.lr_schedule.type} schedule), final training loss ${r.finalTrainLoss.toFixed(4)}; checkpoint \`${r.checkpoint ?? '-'}\`.`,
    '',
    '![loss curve](loss_curve.png)',
    '',
    '## Predictions before and after',
    '',
    '| task | input | reference | base model | fine-tuned |',
    '|---|---|---|---|---|',
    ...r.examples.map((e) => `| ${e.task} | ${cell(e.input)} | ${cell(e.reference)} | ${cell(e.before)} | ${cell(e.after)} |`),
    '',
    '## Data',
    '',
    '| split | samples in | rows out | trained tokens | dropped |',
    '|---|---|---|---|---|',
    ...r.preprocess.map((p, i) => `| ${i === 0 ? 'train' : 'eval'} | ${p.samples_in} | ${p.rows_out} | ${p.trained_tokens} | ${p.dropped.count} |`),
    '',
    '## Timings',
    '',
    '| step | seconds |',
    '|---|---|',
    ...r.timings.map((t) => `| ${t.step} | ${t.seconds.toFixed(1)} |`),
    `| total | ${total.toFixed(1)} |`,
    '',
  ];
  return lines.join('\n');
}
