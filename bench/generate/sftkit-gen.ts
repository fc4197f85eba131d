// The sftkit side of bench/generate: forward-only prefill and greedy KV-cache decoding through generate()
// (src/generate), for one config of bench/train/configs.json with random weights. Prints one JSON line.
// Usage: node --import tsx bench/generate/sftkit-gen.ts CONFIG --prefill B S --decode B P N [--decode ...] --runs R [--profile]
import { formatProfile, profileRows, resetProfile, startProfile, stopProfile } from '../../src/backend/profile.ts';
import { generate } from '../../src/generate/index.ts';
import { benchModel } from '../lib/bench-model.ts';
import { Llama } from '../../src/models/llama.ts';
import { Rng } from '../../src/tensor/index.ts';
import { median } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const name = argv[0] ?? 'M';
const at = (flag: string, i: number, n: number): number[] => argv.slice(i + 1, i + 1 + n).map((x) => {
  const v = Number(x);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${flag}: expected ${n} positive integers, got ${argv.slice(i + 1, i + 1 + n).join(' ')}`);
  return v;
});
const runs = argv.includes('--runs') ? Number(argv[argv.indexOf('--runs') + 1]) : 3;
const prefills = argv.flatMap((a, i) => (a === '--prefill' ? [at(a, i, 2) as [number, number]] : []));
const decodes = argv.flatMap((a, i) => (a === '--decode' ? [at(a, i, 3) as [number, number, number]] : []));

const { cfg } = benchModel(name, 4096);
const model = new Llama(cfg, { seed: 0 });
const rng = new Rng(1);
const prompts = (B: number, P: number): number[][] => Array.from({ length: B }, () => Array.from({ length: P }, () => rng.int(cfg.vocabSize)));
// Greedy, no EOS: every row generates exactly maxNewTokens.
const run = (p: number[][], maxNewTokens: number): void => void generate(model, p, { maxNewTokens, doSample: false });

function timed(fn: () => void): number {
  fn(); // warm-up
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1000);
  }
  return median(ts);
}

const result = { engine: 'sftkit', config: name, runs, prefill: [] as object[], decode: [] as object[] };
for (const [B, S] of prefills) {
  const p = prompts(B, S);
  const s = timed(() => run(p, 1));
  result.prefill.push({ batch: B, seq: S, seconds: s, tokens_per_s: (B * S) / s });
}
for (const [B, P, N] of decodes) {
  const p = prompts(B, P);
  // Decoding time = generating N tokens minus the prefill with its first token (the same in torch_gen.py).
  const first = timed(() => run(p, 1));
  const full = timed(() => run(p, N));
  result.decode.push({ batch: B, prompt: P, new: N, seconds: full - first, tokens_per_s: (B * (N - 1)) / (full - first) });
  if (argv.includes('--profile')) {
    startProfile();
    resetProfile();
    run(p, N);
    stopProfile();
    console.error(`generation by kernel, config ${name}, batch ${B}, prompt ${P}, ${N} new tokens (per decoded token):\n${formatProfile(profileRows(), N)}`);
  }
}
console.log(JSON.stringify(result));
