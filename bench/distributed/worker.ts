// One worker of bench/distributed: trains config S of DESIGN.md (random tokens) through the Trainer with this
// process's rank of the job, and prints {rank, tokens_per_s, peak_rss_mb, optimizer_bytes} as JSON.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initProcessGroup } from '../../src/distributed/index.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { Rng } from '../../src/tensor/index.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import { parseRunConfig } from '../../src/train/config.ts';
import { createModel } from '../../src/train/model-io.ts';
import { Trainer } from '../../src/train/trainer.ts';

const shard = process.argv[2] === 'shard';
const steps = Number(process.argv[3] ?? 6);
const pg = initProcessGroup();
const B = 8 / pg.size; // the global batch stays 8 rows of 256
const S = 256;
const rng = new Rng(7);
const rows = Array.from({ length: 8 * (steps + 1) }, () => {
  const ids = Int32Array.from({ length: S + 1 }, () => rng.int(4096));
  return { inputIds: ids, labels: Int32Array.from(ids) };
});
// Every rank takes its slice of each global batch, as the records loader does.
const mine = rows.filter((_, i) => Math.floor((i % 8) / B) === pg.rank);
// One output directory for the whole job (checkpoints are written by every rank together).
const out = process.argv[4] ?? mkdtempSync(join(tmpdir(), 'sftkit-bench-dp-'));
const cfg = parseRunConfig(
  {
    output_dir: out,
    runner_config: { max_steps: steps + 1, batch_size: B },
    optimizer: { learning_rate: 1e-4 },
    parallel_config: { optimizer_shard: shard },
    train_dataset: { shuffle: false },
    callbacks: { checkpoint: { save_checkpoint_steps: 100000 } },
  },
  'bench',
);
const model = createModel(
  parseModelConfig({ model_type: 'llama', vocab_size: 4096, hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4, num_attention_heads: 4, max_position_embeddings: 256 }, 'S'),
  0,
);
const times: number[] = [];
let last = performance.now();
const trainer = new Trainer({
  config: cfg,
  model,
  train: new ArrayBatchSource(mine, { batchSize: B, shuffle: false }),
  assetsDir: null,
  pg,
  // Rank 0 reports steps: time between them (the first step is warm-up).
  events: {
    step: (info) => {
      const now = performance.now();
      if (info.step > 1) times.push(now - last);
      last = now;
    },
  },
});
await trainer.run();
const med = times.length > 0 ? ([...times].sort((a, b) => a - b)[Math.floor(times.length / 2)] as number) : NaN;
const paramFloats = model.params.values.layout.size;
console.log(
  JSON.stringify({
    rank: pg.rank,
    world: pg.size,
    shard,
    tokens_per_s: (8 * S) / (med / 1000),
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    optimizer_mb: ((shard ? paramFloats / pg.size : paramFloats) * 8) / 2 ** 20,
  }),
);
if (pg.rank === 0) rmSync(out, { recursive: true, force: true });
