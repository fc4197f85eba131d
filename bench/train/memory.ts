// bench/train/memory: peak RSS of training steps (VmHWM of a child process) with every weight trainable vs
// only the norms and lm_head trainable (the rest frozen) vs rank-16 LoRA on every linear (the whole base frozen),
// beside the memory estimate `sftkit run` prints.
// Usage: node --import tsx bench/train/memory.ts [M L] [--steps N]     (prints a Markdown table)
// Child: node --import tsx bench/train/memory.ts --child CONFIG full|norms|lora STEPS   (prints one JSON line)
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { benchModel } from '../lib/bench-model.ts';
import { Llama } from '../../src/models/llama.ts';
import { noDecay } from '../../src/models/model.ts';
import { attachLora } from '../../src/nn/lora.ts';
import { Rng } from '../../src/tensor/index.ts';
import { AdamW, clipScale, globalGradNorm } from '../../src/train/adamw.ts';
import { lossStep } from '../../src/train/loss-step.ts';
import { estimateTrainingMemory } from '../../src/train/memory-estimate.ts';

/** The LoRA mode's adapters: rank 16, alpha 32 on every linear (as bench/train --lora 16). */
const LORA_RANK = 16;

/** Trainable in the `norms` mode: every norm weight and lm_head; the rest (embeddings, linears) frozen. */
const NORMS_AND_HEAD = /(norm\.weight|^lm_head\.weight)$/;

function vmHwmBytes(): number {
  const m = readFileSync('/proc/self/status', 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
  return m ? Number(m[1]) * 1024 : NaN;
}

type Mode = 'full' | 'norms' | 'lora';

function child(name: string, mode: Mode, steps: number): void {
  const { cfg, batch: B, seq: S } = benchModel(name);
  const before = vmHwmBytes();
  // LoRA: the whole base frozen from the start, as `sftkit run` loads it (weightOptionsOf), so no fp32 gradient of it ever exists.
  const frozen = mode === 'norms' ? (n: string) => !NORMS_AND_HEAD.test(n) : () => mode === 'lora';
  const model = new Llama(cfg, { seed: 0, weights: { frozen } });
  if (mode === 'lora') attachLora(model.params, { rank: LORA_RANK, alpha: 2 * LORA_RANK, dropout: 0, target_modules: 'all-linear', use_rslora: false }, new Rng(0), false);
  const lora = model.params.lora ? { lora: { modules: [...model.params.lora.modules.values()], dropout: 0 } } : {};
  const opt = new AdamW(model.params.values, model.params.grads, { lr: 1e-4, weightDecay: 0.1, noDecay });
  const rng = new Rng(1);
  const ids = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));
  const targets = Int32Array.from({ length: B * S }, () => rng.int(cfg.vocabSize));
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    model.params.zeroGrad();
    lossStep(model, { rows: B, ids, targets }, { seqLength: S, normaliser: B * S });
    opt.update(1e-4, clipScale(globalGradNorm(model.params.grads), 1.0));
  }
  const seconds = (performance.now() - t0) / 1000 / steps;
  const est = estimateTrainingMemory({ config: cfg, weights: model.params.counts(), batchSize: B, seqLength: S, recompute: false, ...lora });
  console.log(JSON.stringify({ config: name, mode, steps, seconds_per_step: seconds, runtime_rss: before, peak_rss: vmHwmBytes(), counts: model.params.counts(), estimate: est }));
}

const MODE_LABEL: Record<Mode, string> = { full: 'everything', norms: 'norms + lm_head', lora: `LoRA r${LORA_RANK}, all linears` };

interface Row {
  config: string;
  mode: string;
  peak_rss: number;
  runtime_rss: number;
  counts: { trainableParams: number; frozenParams: number };
  estimate: { total: number; trainable: number; optimizer: number; frozen: number; activations: number; workspace: number };
}

function parent(names: string[], steps: number): void {
  const mb = (b: number): string => (b / 2 ** 20).toFixed(0);
  const rows: Row[] = [];
  for (const name of names) {
    for (const mode of ['full', 'norms', 'lora'] as const) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--child', name, mode, String(steps)], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status !== 0) throw new Error(`child ${name} ${mode} failed:\n${r.stderr}`);
      rows.push(JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as Row);
    }
  }
  console.log(`CPU: ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores; ${steps} steps each; SFTKIT_THREADS=${process.env['SFTKIT_THREADS'] ?? '(default)'}\n`);
  console.log('| config | trainable | trainable params | frozen params | peak RSS (MB) | estimate (MB) | est./peak | trainable+opt / frozen / act. / workspace (MB) |');
  console.log('|---|---|---:|---:|---:|---:|---:|---|');
  for (const r of rows) {
    const e = r.estimate;
    console.log(
      `| ${r.config} | ${MODE_LABEL[r.mode as Mode]} | ${r.counts.trainableParams.toLocaleString('en-US')} | ${r.counts.frozenParams.toLocaleString('en-US')} | ${mb(r.peak_rss)} | ${mb(e.total)} | ${(e.total / r.peak_rss).toFixed(2)} | ${mb(e.trainable + e.optimizer)} / ${mb(e.frozen)} / ${mb(e.activations)} / ${mb(e.workspace)} |`,
    );
  }
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  const mode: Mode = argv[2] === 'norms' || argv[2] === 'lora' ? argv[2] : 'full';
  child(argv[1] ?? 'M', mode, Number(argv[3] ?? 2));
} else {
  const stepsAt = argv.indexOf('--steps');
  const steps = stepsAt >= 0 ? Number(argv[stepsAt + 1]) : 2;
  const names = argv.filter((a, i) => !a.startsWith('--') && (stepsAt < 0 || i !== stepsAt + 1));
  parent(names.length > 0 ? names : ['M', 'L'], steps);
}
