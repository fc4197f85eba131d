// report.md and loss_curve.png of every `sftkit run` (train/finetune), rewritten after each checkpoint save
// and at the end from the run's metrics.jsonl: train loss and lr by step, eval loss, perplexity and
// generation metrics, the best checkpoint, and the settings that shaped the curve.
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { writeFileAtomicSync } from '../../formats/write-file.ts';
import type { RunConfig } from '../config.ts';
import type { RunProgress } from '../trainer.ts';
import { type CurvePoint, type LrPoint, writeLossCurve } from './loss-curve.ts';

export interface TrainLine {
  step: number;
  loss: number;
  lr: number;
  grad_norm?: number;
  tokens_per_s?: number;
}

export interface EvalLine {
  step: number;
  loss: number;
  perplexity: number;
  tokens?: number;
  metrics?: Record<string, number>;
}

/**
 * The train and eval lines of a metrics.jsonl, by step. A resumed run logs again the steps after its checkpoint,
 * so the last line of a step wins; a torn last line (a killed run) or any unreadable line is skipped.
 */
export function readMetrics(path: string): { train: TrainLine[]; eval: EvalLine[] } {
  const train = new Map<number, TrainLine>();
  const evals = new Map<number, EvalLine>();
  if (!existsSync(path)) return { train: [], eval: [] };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof m !== 'object' || m === null || !Number.isSafeInteger(m['step']) || typeof m['loss'] !== 'number') continue;
    if (m['type'] === 'train' && typeof m['lr'] === 'number') train.set(m['step'] as number, m as unknown as TrainLine);
    else if (m['type'] === 'eval' && typeof m['perplexity'] === 'number') evals.set(m['step'] as number, m as unknown as EvalLine);
  }
  const byStep = <T extends { step: number }>(m: Map<number, T>): T[] => [...m.values()].sort((a, b) => a.step - b.step);
  return { train: byStep(train), eval: byStep(evals) };
}

export const REPORT_FILE = 'report.md';
const MAX_TRAIN_POINTS = 2000;
export const CURVE_FILE = 'loss_curve.png';

const num = (x: number | undefined, digits = 4): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));

/** The report's markdown. */
export function renderRunReport(cfg: RunConfig, progress: RunProgress, metrics: { train: TrainLine[]; eval: EvalLine[] }): string {
  const out = cfg.output_dir;
  const last = metrics.train.at(-1);
  const lastEval = metrics.eval.at(-1);
  const status =
    progress.status === 'finished' ? 'finished' : progress.status === 'stopped' ? `stopped (${progress.stopReason ?? 'stop requested'})` : 'in progress';
  const metricNames = [...new Set(metrics.eval.flatMap((e) => Object.keys(e.metrics ?? {})))].sort();
  const c = cfg;
  const lines = [
    '# sftkit run report',
    '',
    `Run \`${c.run_mode}\` of \`${c.load_checkpoint || c.model.arch || '-'}\` on \`${c.train_dataset.dataset_dir}\`: step ${progress.step} of ${progress.totalSteps}, ${status}.`,
    '',
    '## Results',
    '',
    '| | value |',
    '|---|---|',
    `| final training loss (step ${last?.step ?? '-'}) | ${num(last?.loss)} |`,
    `| final eval loss (step ${lastEval?.step ?? '-'}) | ${num(lastEval?.loss)} |`,
    `| final eval perplexity | ${num(lastEval?.perplexity, 3)} |`,
    ...metricNames.map((k) => `| final eval ${k} | ${num(lastEval?.metrics?.[k])} |`),
    `| learning rate at the last step | ${last ? last.lr.toExponential(3) : '-'} |`,
    `| latest checkpoint | ${progress.lastCheckpoint ? `\`${relative(out, progress.lastCheckpoint)}\`` : '-'} |`,
    ...(progress.best
      ? [`| best checkpoint (${progress.best.metric} ${num(progress.best.value)} at step ${progress.best.step}) | ${progress.best.checkpoint ? `\`${relative(out, progress.best.checkpoint)}\`` : '-'} |`]
      : []),
    '',
    `![loss curve](${CURVE_FILE})`,
    '',
  ];
  if (metrics.eval.length > 0) {
    lines.push('## Evaluations', '', `| step | eval loss | perplexity |${metricNames.map((k) => ` ${k} |`).join('')}`, `|---|---|---|${metricNames.map(() => '---|').join('')}`);
    for (const e of metrics.eval) lines.push(`| ${e.step} | ${num(e.loss)} | ${num(e.perplexity, 3)} |${metricNames.map((k) => ` ${num(e.metrics?.[k])} |`).join('')}`);
    lines.push('');
  }
  lines.push(
    '## Settings',
    '',
    `AdamW lr ${c.optimizer.learning_rate} (${c.lr_schedule.type} schedule), batch ${c.runner_config.batch_size} × gradient accumulation ${c.runner_config.gradient_accumulation_steps}, ` +
      `${c.runner_config.max_steps > 0 ? `max_steps ${c.runner_config.max_steps}` : `${c.runner_config.epochs} epoch(s)`}, seed ${c.seed}, dtype ${c.model.dtype}. ` +
      `Every step's numbers are in \`metrics.jsonl\`.`,
    '',
  );
  return lines.join('\n');
}

/** Writes `<output_dir>/report.md` and `<output_dir>/loss_curve.png` (each through a temp file and a rename). */
export async function writeRunReport(cfg: RunConfig, progress: RunProgress): Promise<void> {
  const metrics = readMetrics(join(cfg.output_dir, 'metrics.jsonl'));
  // A long run's chart draws at most about MAX_TRAIN_POINTS training points (every k-th, and the last one).
  const stride = Math.ceil(metrics.train.length / MAX_TRAIN_POINTS);
  const train = metrics.train.filter((_, i) => i % stride === 0 || i === metrics.train.length - 1);
  const points: CurvePoint[] = [
    ...train.map((m) => ({ step: m.step, loss: m.loss, series: 'training loss' })),
    ...metrics.eval.map((m) => ({ step: m.step, loss: m.loss, series: 'eval loss' })),
  ];
  const lr: LrPoint[] = train.map((m) => ({ step: m.step, lr: m.lr }));
  await writeLossCurve(points, join(cfg.output_dir, CURVE_FILE), `sftkit ${cfg.run_mode}: loss and learning rate`, lr);
  writeFileAtomicSync(join(cfg.output_dir, REPORT_FILE), renderRunReport(cfg, progress, metrics));
}
