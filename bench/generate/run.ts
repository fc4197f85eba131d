// bench/generate: sftkit vs tuned PyTorch generation speed, side by side in one run, for configs of
// bench/train/configs.json with random weights: (a) forward-only prefill tokens/s at the training batch and
// sequence length, (b) greedy KV-cache decoding tokens/s at batch 1 and 4 (prompt 64 tokens, 128 new).
// Usage: node --import tsx bench/generate/run.ts [M L] [--runs 3] [--new 128] [--prompt 64] [--batches 1,4] [--profile]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { table } from '../lib/markdown.ts';
import { type Finding, emitFindings } from '../lib/report.ts';
import { exitIfMissing } from '../lib/requirements.ts';
import { formatNumber, formatRatio } from '../lib/stats.ts';
import { PYTHON, torchEnv } from '../lib/torch-env.ts';

exitIfMissing('bench/generate/run.ts', ['torch']);

const args = process.argv.slice(2);
const valueOf = (flag: string, fallback: string): string => {
  const i = args.indexOf(flag);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
};
const valued = new Set(['--runs', '--new', '--prompt', '--batches']);
const names = args.filter((a, i) => !a.startsWith('--') && !valued.has(args[i - 1] ?? ''));
const configs = names.length > 0 ? names : ['M', 'L'];
const runs = Number(valueOf('--runs', '3'));
const newTokens = Number(valueOf('--new', '128'));
const promptLen = Number(valueOf('--prompt', '64'));
const batches = valueOf('--batches', '1,4').split(',').map(Number);
const profile = args.includes('--profile');
for (const [what, v] of [['--runs', runs], ['--new', newTokens], ['--prompt', promptLen], ...batches.map((b) => ['--batches', b] as const)] as const) {
  if (!Number.isInteger(v) || v < 1 || (what === '--new' && v < 2)) throw new Error(`bench/generate: ${what} must be a positive integer${what === '--new' ? ' >= 2' : ''}, got ${v}`);
}

const env: NodeJS.ProcessEnv = { ...process.env, SFTKIT_THREADS: '2' };
delete env['OPENBLAS_CORETYPE'];
delete env['OPENBLAS_L2_SIZE'];
const tuned = torchEnv(env, { threads: 2 });
const shapes = JSON.parse(readFileSync(new URL('../train/configs.json', import.meta.url), 'utf8')) as Record<string, { batch: number; seq: number }>;

interface Side {
  engine: string;
  prefill: Array<{ batch: number; seq: number; tokens_per_s: number }>;
  decode: Array<{ batch: number; prompt: number; new: number; seconds: number; tokens_per_s: number }>;
}

function side(cmd: string, argv: string[], e: NodeJS.ProcessEnv): Side {
  const r = spawnSync(cmd, argv, { env: e, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed:\n${r.stderr}`);
  if (profile && r.stderr.trim() !== '') console.log(`\n\`\`\`\n${r.stderr.trim()}\n\`\`\`\n`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as Side;
}

console.log(`machine: ${cpus()[0]?.model ?? '?'} (${cpus().length} cores), 2 threads; random weights (seed 0), greedy, no EOS; medians of ${runs} runs after 1 warm-up`);
console.log(tuned.note);
console.log(`prefill: one forward over the prompt filling the KV cache, logits of the last position (generate with max_new_tokens 1); decode: (time for ${newTokens} new tokens − time for 1) / ${newTokens - 1} steps, prompt ${promptLen} tokens`);
const rows: string[][] = [];
const findings: Finding[] = [];
for (const name of configs) {
  const shape = shapes[name];
  if (!shape) throw new Error(`bench/generate: unknown config ${name}`);
  const work = ['--runs', String(runs), '--prefill', String(shape.batch), String(shape.seq), ...batches.flatMap((b) => ['--decode', String(b), String(promptLen), String(newTokens)])];
  const ours = side(process.execPath, ['--import', 'tsx', 'bench/generate/sftkit-gen.ts', name, ...work, ...(profile ? ['--profile'] : [])], env);
  const torch = side(PYTHON, ['bench/generate/torch_gen.py', name, ...work], tuned.env);
  ours.prefill.forEach((o, i) => {
    const t = torch.prefill[i];
    if (!t) return;
    const ratio = o.tokens_per_s / t.tokens_per_s;
    rows.push([name, `prefill ${o.batch}×${o.seq}`, formatNumber(o.tokens_per_s), formatNumber(t.tokens_per_s), formatRatio(ratio), '', '']);
    findings.push({ figure: `prefill tok/s, ${name}, ${o.batch}×${o.seq}, vs PyTorch`, target: '(recorded)', measured: formatRatio(ratio), met: null });
  });
  ours.decode.forEach((o, i) => {
    const t = torch.decode[i];
    if (!t) return;
    const ratio = o.tokens_per_s / t.tokens_per_s;
    const msPerStep = (d: { seconds: number; new: number }): string => ((1000 * d.seconds) / (d.new - 1)).toFixed(1);
    rows.push([name, `decode batch ${o.batch}`, formatNumber(o.tokens_per_s), formatNumber(t.tokens_per_s), formatRatio(ratio), msPerStep(o), msPerStep(t)]);
    findings.push({ figure: `KV-cache decode tok/s, ${name}, batch ${o.batch}, vs PyTorch`, target: '(recorded)', measured: formatRatio(ratio), met: null });
  });
}
console.log(table(['config', 'phase', 'sftkit tok/s', 'PyTorch tok/s', 'ratio', 'sftkit ms/step', 'PyTorch ms/step'], rows));
emitFindings(findings);
