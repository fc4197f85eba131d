// Writes a real training checkpoint root for the fuzz suite's training-checkpoint target: a tiny Llama trained
// 2 steps with a checkpoint after each (trainer_state.json, rank_0.json, optimizer shard, meta.json).
// Usage: node --import tsx test/fuzz/make-training-checkpoint.ts OUTPUT_DIR
import { parseModelConfig } from '../../src/models/config.ts';
import { ArrayBatchSource } from '../../src/train/batches.ts';
import { parseRunConfig } from '../../src/train/config.ts';
import { createModel } from '../../src/train/model-io.ts';
import { Trainer } from '../../src/train/trainer.ts';

const out = process.argv[2];
if (!out) throw new Error('usage: make-training-checkpoint.ts OUTPUT_DIR');
const config = {
  model_type: 'llama', vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 16, bos_token_id: 1, eos_token_id: 2,
};
const rows = Array.from({ length: 4 }, (_, i) => {
  const ids = Int32Array.from({ length: 9 }, (_, t) => 3 + ((i * 7 + t * 5) % 30));
  return { inputIds: ids, labels: Int32Array.from(ids) };
});
const model = createModel(parseModelConfig(config, 'config.json'), 1);
const cfg = parseRunConfig({
  seed: 0, output_dir: out, runner_config: { epochs: 1, batch_size: 2 }, optimizer: { learning_rate: 1e-2 },
  callbacks: { checkpoint: { prefix: 'fuzz', save_checkpoint_steps: 1, keep_checkpoint_max: 2 }, loss_monitor: { log_every: 1000 } },
}, 'fuzz');
await new Trainer({ config: cfg, model, train: new ArrayBatchSource(rows, { batchSize: 2, seed: 0 }), assetsDir: null }).run();
model.release();
