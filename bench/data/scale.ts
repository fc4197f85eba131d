// Preprocess at scale: generates a JSONL file of --mb megabytes of conversations in the temp folder, runs
// `sftkit data preprocess` on it as its own process, and prints samples/s, MB/s and the process's peak RSS
// (GNU time), then deletes the file and the records. The input is streamed, so RSS stays bounded whatever --mb.
// Usage: node --import tsx bench/data/scale.ts [--mb 1024] [--tokenizer DIR] [--seq_length 4096]
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitIfMissing } from '../lib/requirements.ts';

exitIfMissing('bench/data/scale.ts', ['time']);
const ROOT = join(import.meta.dirname, '..', '..');
const flag = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const MB = Number(flag('mb', '1024'));
const tokenizer = flag('tokenizer', join(ROOT, 'node_modules', '@lenml', 'tokenizer-llama3', 'models'));
const seqLength = flag('seq_length', '4096');

// Sentences of the State of the Union addresses, combined at random into two-round conversations (~1 KB each).
const sentences: string[] = [];
const sotu = join(ROOT, 'node_modules', '@stdlib', 'datasets-sotu', 'data');
for (const f of readdirSync(sotu).filter((f) => f.endsWith('.txt')).sort()) {
  for (const s of readFileSync(join(sotu, f), 'utf8').split(/(?<=[.!?])\s+/)) if (s.trim() !== '') sentences.push(s.trim());
}
let state = 1;
const pick = (): string => {
  state = (state * 1103515245 + 12345) % 2 ** 31;
  return sentences[state % sentences.length]!;
};
const para = (n: number): string => Array.from({ length: n }, pick).join(' ');

const dir = mkdtempSync(join(tmpdir(), 'sftkit-bench-scale-'));
try {
  const input = join(dir, 'big.jsonl');
  const fd = openSync(input, 'w');
  let bytes = 0, samples = 0;
  const batch: string[] = [];
  while (bytes < MB * 1e6) {
    const line = JSON.stringify({ conversations: [
      { from: 'human', value: para(1) }, { from: 'gpt', value: para(3) },
      { from: 'human', value: para(1) }, { from: 'gpt', value: para(2) },
    ] }) + '\n';
    batch.push(line);
    bytes += Buffer.byteLength(line);
    samples++;
    if (batch.length === 10000) writeSync(fd, batch.splice(0).join(''));
  }
  writeSync(fd, batch.join(''));
  closeSync(fd);
  const size = statSync(input).size;
  console.log(`input: ${(size / 1e6).toFixed(0)} MB of JSONL, ${samples} conversations (two rounds each, State of the Union sentences)`);
  const out = join(dir, 'records');
  const args = [join(ROOT, 'bin', 'sftkit.js'), 'data', 'preprocess', '--dataset_type', 'qa', '--input_glob', input, '--tokenizer', tokenizer,
    '--seq_length', seqLength, '--packing', '--output_file', out];
  const t = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '@@time %M %U %S', process.execPath, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`preprocess failed: ${r.stderr}`);
  const [rssKb, user, sys] = /@@time (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr)!.slice(1).map(Number);
  const tokens = Number(/total tokens: +(\d+)/.exec(r.stdout)?.[1] ?? NaN);
  console.log(`command: sftkit data preprocess --dataset_type qa --tokenizer ${tokenizer.replace(ROOT + '/', '')} --seq_length ${seqLength} --packing`);
  console.log(`${wall.toFixed(1)} s wall, ${(user! + sys!).toFixed(1)} s CPU: ${(samples / wall).toFixed(0)} samples/s, ${(size / 1e6 / wall).toFixed(2)} MB/s, ${(tokens / wall).toFixed(0)} tokens/s (${tokens} tokens)`);
  console.log(`peak RSS: ${(rssKb! / 1024).toFixed(0)} MB (GNU time, the whole preprocess process)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
