// bench/serve: `sftkit serve` end to end (HTTP, server-sent events, the official openai client) on config M of
// bench/train/configs.json with random weights: aggregate generated tokens/s and time to first token with 1, 4
// and 16 concurrent streams (continuous batching), against the same requests sent one after another.
// Greedy, EOS ignored, so every stream generates exactly --new tokens from a --prompt-token random prompt.
// Usage: node --import tsx bench/serve/run.ts [M] [--new 128] [--prompt 64] [--streams 1,4,16] [--runs 1]
import { cpus } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { benchModel } from '../lib/bench-model.ts';
import { Llama } from '../../src/models/llama.ts';
import { createEngine } from '../../src/serve/engine.ts';
import { startServer } from '../../src/serve/server.ts';
import { Rng } from '../../src/tensor/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';
import { table } from '../lib/markdown.ts';
import { type Finding, emitFindings } from '../lib/report.ts';
import { formatNumber, formatRatio, median } from '../lib/stats.ts';

const args = process.argv.slice(2);
const valueOf = (flag: string, fallback: string): string => {
  const i = args.indexOf(flag);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
};
const valued = new Set(['--new', '--prompt', '--streams', '--runs']);
const name = args.find((a, i) => !a.startsWith('--') && !valued.has(args[i - 1] ?? '')) ?? 'M';
const newTokens = Number(valueOf('--new', '128'));
const promptLen = Number(valueOf('--prompt', '64'));
const runs = Number(valueOf('--runs', '1'));
const streams = valueOf('--streams', '1,4,16').split(',').map(Number);
for (const [flag, v] of [['--new', newTokens], ['--prompt', promptLen], ['--runs', runs], ...streams.map((s) => ['--streams', s] as const)] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`bench/serve: ${flag} must be a positive integer, got ${v}`);
}

const { cfg } = benchModel(name, 4096);
const model = new Llama(cfg, { seed: 0 });
// A 32k-piece tokenizer decodes every id of the config's vocabulary (what the server streams as text).
const tok = Tokenizer.fromDir(join(import.meta.dirname, '..', '..', 'node_modules', '@lenml', 'tokenizer-llama2', 'models'));
const maxStreams = Math.max(...streams);
const engine = createEngine(model, tok, {
  modelId: name,
  template: { template: 'none', alpacaPrompts: false, source: 'config' },
  slots: maxStreams,
  maxQueue: maxStreams,
  context: promptLen + newTokens,
});
engine.eosIds = [];
const server = await startServer(engine, { host: '127.0.0.1', port: 0, apiKey: null });
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 600_000 });
const rng = new Rng(1);
const prompt = (): number[] => Array.from({ length: promptLen }, () => rng.int(cfg.vocabSize));

interface Stream { ttft: number; tokens: number }

/** One streamed request: seconds to its first token, tokens generated (from usage). */
async function stream(ids: number[], t0: number): Promise<Stream> {
  const s = await client.completions.create({ model: name, prompt: ids, max_tokens: newTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let ttft = -1;
  let tokens = 0;
  for await (const chunk of s) {
    if (ttft < 0 && (chunk.choices[0]?.text ?? '') !== '') ttft = (performance.now() - t0) / 1000;
    if (chunk.usage) tokens = chunk.usage.completion_tokens;
  }
  // A stream whose tokens all decode to nothing visible counts its end as its first text.
  return { ttft: ttft < 0 ? (performance.now() - t0) / 1000 : ttft, tokens };
}

interface Measure { tokensPerS: number; ttft: number }

/** `n` streams at once, or one after another; aggregate tokens/s over the wall time and median time to first token. */
async function measure(n: number, concurrent: boolean): Promise<Measure> {
  const prompts = Array.from({ length: n }, prompt);
  const t0 = performance.now();
  let results: Stream[];
  if (concurrent) results = await Promise.all(prompts.map((p) => stream(p, t0)));
  else {
    results = [];
    for (const p of prompts) results.push(await stream(p, performance.now()));
  }
  const seconds = (performance.now() - t0) / 1000;
  const tokens = results.reduce((s, r) => s + r.tokens, 0);
  if (tokens !== n * newTokens) throw new Error(`bench/serve: ${tokens} tokens generated, expected ${n * newTokens}`);
  return { tokensPerS: tokens / seconds, ttft: median(results.map((r) => r.ttft)) };
}

async function best(n: number, concurrent: boolean): Promise<Measure> {
  const all: Measure[] = [];
  for (let i = 0; i < runs; i++) all.push(await measure(n, concurrent));
  return { tokensPerS: median(all.map((m) => m.tokensPerS)), ttft: median(all.map((m) => m.ttft)) };
}

try {
  console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores), SFTKIT_THREADS=${process.env['SFTKIT_THREADS'] ?? 'default'}; config ${name}, random weights (seed 0), fp32`);
  console.log(`each stream: POST /v1/completions with a ${promptLen}-token prompt, ${newTokens} new tokens, greedy, EOS ignored, streamed (openai client, SSE); medians of ${runs} run(s) after a warm-up`);
  console.log('aggregate = all streams\' tokens / wall time from the first request to the last token; TTFT = median time from the batch\'s start (concurrent) or the request\'s own start (sequential) to its first text');
  await measure(2, true); // warm-up: allocations, RoPE tables, JIT
  const rows: string[][] = [];
  const findings: Finding[] = [];
  let one = 0;
  for (const n of streams) {
    const conc = await best(n, true);
    const seq = n === 1 ? conc : await best(n, false);
    if (n === 1) one = conc.tokensPerS;
    const vsOne = one > 0 ? conc.tokensPerS / one : NaN;
    rows.push([String(n), formatNumber(conc.tokensPerS), formatNumber(seq.tokensPerS), formatRatio(conc.tokensPerS / seq.tokensPerS), formatRatio(vsOne), (1000 * conc.ttft).toFixed(0), (1000 * seq.ttft).toFixed(0)]);
    if (n === 16 && one > 0) findings.push({ figure: `serve: aggregate tok/s, 16 concurrent streams vs 1, config ${name}`, target: '≥ 5×', measured: formatRatio(vsOne), met: vsOne >= 5 });
    else findings.push({ figure: `serve: aggregate tok/s, ${n} concurrent streams vs one after another, config ${name}`, target: '(recorded)', measured: formatRatio(conc.tokensPerS / seq.tokensPerS), met: null });
  }
  const st = engine.scheduler.stats;
  console.log(table(['streams', 'concurrent tok/s', 'sequential tok/s', 'concurrent / sequential', 'vs 1 stream', 'TTFT concurrent ms', 'TTFT sequential ms'], rows));
  console.log(`scheduler: ${st.steps} decode steps, mean batch ${(st.decodedRows / Math.max(1, st.steps)).toFixed(2)}, ${st.prefills} prefills`);
  emitFindings(findings);
} finally {
  await server.close();
  model.release();
}
