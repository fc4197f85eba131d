// Worker for distributed tests (run under mpirun -np 2): rank 1 fails in the way argv[2] names while rank 0
// waits in an all-reduce that can never complete; the whole job must end with a non-zero status, not hang.
// 'zero3': both ranks train a tiny model at ZeRO-3; rank 1 throws before its forward while rank 0 waits in the
// all-gather of the first layer group.
import { initProcessGroup } from '../../../src/distributed/index.ts';
import { parseModelConfig } from '../../../src/models/config.ts';
import { Tensor } from '../../../src/tensor/index.ts';
import { lossStep } from '../../../src/train/loss-step.ts';
import { createModel } from '../../../src/train/model-io.ts';
import { ZeroAdamW } from '../../../src/train/optimizer.ts';

const mode = process.argv[2] ?? 'throw';
const pg = initProcessGroup();
pg.barrier();
if (mode === 'zero3') {
  const config = { model_type: 'llama', vocab_size: 41, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 };
  const model = createModel(parseModelConfig(config, 'tiny'), 11, { gradients: false });
  const opt = new ZeroAdamW(model.params, pg, { lr: 0.01 }, 3);
  opt.zeroGrad();
  if (pg.rank === 1) throw new Error('rank 1 fails on purpose at ZeRO-3');
  lossStep(model, { rows: 1, ids: Int32Array.from({ length: 8 }, (_, i) => i), targets: Int32Array.from({ length: 8 }, (_, i) => i + 1) }, { seqLength: 8, normaliser: 8 });
  console.log('rank 0 was not stopped');
} else if (pg.rank === 1) {
  if (mode === 'throw') throw new Error('rank 1 fails on purpose');
  if (mode === 'reject') void Promise.reject(new Error('rank 1 rejects on purpose'));
  if (mode === 'exit-code') process.exitCode = 3; // what the CLI does after printing a typed error
  if (mode === 'signal') process.kill(process.pid, 'SIGKILL');
} else {
  pg.allReduce(Tensor.zeros([4]));
  console.log('rank 0 was not stopped');
}
