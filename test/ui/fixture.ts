// A dashboard root for the UI tests: two checkpoints (the demo's base model, and a copy standing for a
// fine-tuned one), token records made from the Alpaca fixture with that tokenizer, and a finished run with
// metrics, checkpoints, eval results and a report.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertAlpacaRecords } from '../../src/data/alpaca.ts';
import { readJsonRecords } from '../../src/data/json-input.ts';
import { preprocess } from '../../src/data/preprocess.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

export const REPO = join(import.meta.dirname, '..', '..');
export const DEMO = join(REPO, 'assets', 'demo', 'base-model');

export async function makeUiRoot(): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'sftkit-ui-'));
  cpSync(DEMO, join(root, 'models', 'base'), { recursive: true });
  cpSync(DEMO, join(root, 'models', 'tuned'), { recursive: true });
  const conv = join(root, 'conversations.json');
  writeFileSync(conv, JSON.stringify(convertAlpacaRecords(readJsonRecords(join(REPO, 'test', 'fixtures', 'data', 'alpaca_small.json')))));
  // seq_length 128 cuts some samples and leaves nothing to train in others: the report has truncations and drops.
  await preprocess({ datasetType: 'qa', inputGlob: conv, tokenizer: Tokenizer.fromDir(DEMO), seqLength: 128, outputDir: join(root, 'records'), template: 'vicuna', repeat: 4 });
  // A finished run, as the trainer and the demo leave it.
  const run = join(root, 'runs', 'done');
  mkdirSync(join(run, 'checkpoint', 'demo-1_6'), { recursive: true });
  const lines = [];
  for (let step = 1; step <= 6; step++) {
    lines.push({ type: 'train', step, total_steps: 6, epoch: 1, loss: 3 - step * 0.25, lr: 1e-3 * (1 - step / 7), grad_norm: 1, trained_tokens: 40, tokens_per_s: 900 + step });
    if (step % 3 === 0) lines.push({ type: 'eval', step, loss: 3.1 - step * 0.2, perplexity: Math.exp(3.1 - step * 0.2), tokens: 100 });
  }
  writeFileSync(join(run, 'metrics.jsonl'), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  writeFileSync(join(run, 'checkpoint', 'meta.json'), JSON.stringify({ latest: 'demo-1_6', checkpoints: ['demo-1_6'] }));
  cpSync(DEMO, join(run, 'checkpoint', 'demo-1_6'), { recursive: true });
  writeFileSync(join(run, 'checkpoint', 'demo-1_6', 'trainer_state.json'), JSON.stringify({ step: 6, epoch: 0, config: { train_dataset: { dataset_dir: join(root, 'records') } } }));
  writeFileSync(join(run, 'eval_results.json'), JSON.stringify({ loss: 1.9, perplexity: 6.69, tokens: 100 }));
  writeFileSync(join(run, 'report.md'), '# Report\n\nloss went down <script>alert(1)</script>\n');
  return root;
}

/** The trained-token count of each row, read straight from the records' labels file (labels[1:] != -100). */
export function trainedCountsFromFile(recordsDir: string): number[] {
  const manifest = JSON.parse(readFileSync(join(recordsDir, 'manifest.json'), 'utf8')) as { row_length: number; shards: { rows: number; files: { labels: { name: string } } }[] };
  const out: number[] = [];
  for (const shard of manifest.shards) {
    const buf = readFileSync(join(recordsDir, shard.files.labels.name));
    const labels = new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    for (let r = 0; r < shard.rows; r++) {
      let n = 0;
      for (let j = 1; j < manifest.row_length; j++) if (labels[r * manifest.row_length + j] !== -100) n++;
      out.push(n);
    }
  }
  return out;
}
