// Test helpers for the server: the demo model, sftkit's own greedy decoding of a prompt alone, the
// near-tie judge (top-2 logit margin) that decides whether two decodings may legitimately part, and
// `sftkit serve` as a child process.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { generate } from '../../src/generate/index.ts';
import { logits, type CausalLM } from '../../src/models/model.ts';
import { positionIds } from '../../src/models/rope.ts';
import { Tensor, noGrad, scope } from '../../src/tensor/index.ts';

export const ROOT = join(import.meta.dirname, '..', '..');
export const DEMO = join(ROOT, 'assets', 'demo', 'base-model');
/** Below this top-2 logit margin, float rounding of a differently shaped batch may flip the greedy choice. */
export const NEAR_TIE = 1e-3;

/** The top-2 margin of the logits after `prefix` (the step that chose prefix's next token). */
export function margin(model: CausalLM, prefix: readonly number[]): number {
  return noGrad(() =>
    scope(() => {
      const S = prefix.length;
      const all = logits(model, model.forward(Tensor.from(Int32Array.from(prefix), [1, S], 'int32'), { positions: positionIds(1, S) })).toArray() as Float32Array;
      const row = all.subarray((S - 1) * model.config.vocabSize);
      let a = -Infinity;
      let b = -Infinity;
      for (const x of row) {
        if (x > a) [a, b] = [x, a];
        else if (x > b) b = x;
      }
      return a - b;
    }),
  );
}

/**
 * Whether `got` equals `solo` (greedy tokens of `prompt` alone), or parts from it only where solo's own
 * choice was a near-tie. Returns a message when not.
 */
export function judgeGreedy(model: CausalLM, prompt: readonly number[], got: readonly number[], solo: readonly number[]): string | null {
  const n = Math.min(got.length, solo.length);
  for (let j = 0; j < n; j++) {
    if (got[j] === solo[j]) continue;
    const m = margin(model, [...prompt, ...solo.slice(0, j)]);
    return m < NEAR_TIE ? null : `token ${j}: ${got[j]} vs alone ${solo[j]} with a top-2 margin of ${m.toExponential(2)}`;
  }
  return got.length === solo.length ? null : `${got.length} tokens vs ${solo.length} alone`;
}

/** Greedy tokens of one prompt decoded alone by generate(). */
export function soloGreedy(model: CausalLM, prompt: readonly number[], maxNewTokens: number, eos: readonly number[]): number[] {
  return (generate(model, [prompt], { maxNewTokens, eosTokenIds: eos })[0] as { tokens: number[] }).tokens;
}

/** A `sftkit serve` child listening on `url`; stop() sends SIGTERM and resolves with its exit code. */
export interface ServeChild {
  url: string;
  /** What the server wrote to stderr so far. */
  stderr(): string;
  stop(): Promise<number | null>;
}

/** Starts `sftkit serve ARGS` from the sources under test on a free port; resolves once it listens. */
export function startServe(args: readonly string[], opts: { threads?: number } = {}): Promise<ServeChild> {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'sftkit.js'), 'serve', '--port', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, SFTKIT_FROM_SOURCE: '1', SFTKIT_THREADS: String(opts.threads ?? 1) },
  });
  let err = '';
  let out = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve({ url: m[1] as string, stderr: () => err, stop: async () => (child.kill('SIGTERM'), await exited) });
    });
    void exited.then((code) => reject(new Error(`sftkit serve exited with ${code} before listening: ${err}`)));
  });
}
