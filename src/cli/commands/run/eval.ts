// `sftkit run --run_mode eval`: loss and perplexity over the eval records, plus generation metrics when asked,
// written to output_dir/eval_results.json and printed as one JSON line.
import { join } from 'node:path';
import { type MetricName, evaluateGeneration } from '../../../eval/index.ts';
import { examplesFromRecords } from '../../../eval/record-examples.ts';
import { writeFileAtomicSync } from '../../../formats/write-file.ts';
import { defaultEosIds } from '../../../generate/index.ts';
import { RecordsBatchSource } from '../../../train/records-source.ts';
import { evaluateLoss } from '../../../train/trainer.ts';
import { autocast } from '../../../tensor/index.ts';
import { type RunContext, openDataset } from './context.ts';

export async function runEval(ctx: RunContext): Promise<void> {
  const { cfg, model } = ctx;
  const records = openDataset(cfg.eval_dataset.dataset_dir, 'eval_dataset');
  try {
    ctx.checkRows(records);
    ctx.output.ensure();
    const src = new RecordsBatchSource(records, { batchSize: cfg.runner_config.batch_size, shuffle: false, dropRemainder: false, seed: cfg.seed });
    const result = autocast(cfg.model.dtype, () => evaluateLoss(model, src));
    const json: Record<string, number> = { loss: result.loss, perplexity: result.perplexity, tokens: result.tokens };

    const genMetrics = cfg.callbacks.eval.metrics.filter((m): m is MetricName => m !== 'perplexity');
    if (genMetrics.length > 0) {
      const tok = ctx.needTokenizer('generation metrics');
      const examples = examplesFromRecords(records, tok);
      const opts = { ...ctx.generationOptions(), metrics: genMetrics, eosTokenIds: defaultEosIds(model, tok) };
      const r = autocast(cfg.model.dtype, () => evaluateGeneration(model, tok, examples, opts));
      Object.assign(json, r.metrics);
    }

    if (ctx.pg.rank === 0) {
      writeFileAtomicSync(join(cfg.output_dir, 'eval_results.json'), `${JSON.stringify(json, null, 2)}\n`);
      console.log(JSON.stringify(json));
    }
  } finally {
    records.close();
  }
}
