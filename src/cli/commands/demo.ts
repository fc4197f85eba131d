// `sftkit demo`: the end-to-end workflow on bundled assets. Until it exists, it prints the workflow.
import type { Command } from 'commander';
import { native } from '../../backend/binding.ts';

const WORKFLOW = `sftkit — supervised fine-tuning on Node.js

The workflow (MindFormers-style full-parameter SFT):
  1. select a pretrained model          configs/ (llama2-7b, gpt2, tiny models)
  2. download it from the hub           sftkit download REPO_ID
  3. convert HF weights                 sftkit convert --input_path HF_DIR --output_path CKPT_DIR
  4. prepare data                       sftkit data alpaca ... ; sftkit data preprocess ...
  5. fine-tune                          sftkit run --config CONFIG.yaml --run_mode finetune
                                        sftkit launch --worker_num N -- run --config ...
  6. resumable checkpoints              output/checkpoint/
  7. evaluate and generate              sftkit run --run_mode eval | predict

The end-to-end demo on bundled assets is not built yet; this build provides the engine.`;

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the end-to-end SFT demo on bundled assets')
    .action(() => {
      console.log(WORKFLOW);
      const isa = ['scalar', 'AVX2+FMA', 'AVX-512'][native.detectedIsa()] ?? 'unknown';
      console.log(`\nengine: ${native.getThreads()} threads, ${isa} kernels`);
    });
}
