// Preprocess throughput: 52,000 synthetic Alpaca records (the real set's size) through `data alpaca` and
// `data preprocess --dataset_type qa` (vicuna) at seq_length 2048; prints samples/s and tokens/s.
// Usage: node --import tsx bench/data/run.ts [--records 52000] [--seq_length 2048] [--model_file M | --tokenizer DIR] [--packing]
// Default tokenizer: the SentencePiece BPE fixture (test/fixtures/tokenizer/bpe.model), MindFormers' tokenizer.model path.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertAlpacaFile, preprocess } from '../../src/data/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

const records = Number(flag('records', '52000'));
const seqLength = Number(flag('seq_length', '2048'));
const tokDir = flag('tokenizer', '');
const modelFile = flag('model_file', join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'tokenizer', 'bpe.model'));
const packing = process.argv.includes('--packing');

// Word lengths and sample shapes near the real Alpaca set's: instruction ~13 words, 40% with an input of ~15
// words, output ~45 words (a long tail up to ~300).
const WORDS = (
  'the of and to a in is that for it as with was on be by this are or from at an which have not has but ' +
  'government people nation congress president year world states united country new time great public law ' +
  'write explain describe list give summarize translate compute classify generate answer question sentence ' +
  'example following paragraph data model language energy economy health education water history science'
).split(' ');
let state = 12345;
const rand = (): number => {
  state = (Math.imul(state, 1103515245) + 12345) >>> 0;
  return state / 2 ** 32;
};
const words = (n: number): string => {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(rand() * WORDS.length)] as string);
  const s = out.join(' ');
  return s.charAt(0).toUpperCase() + s.slice(1) + '.';
};
const length = (mean: number): number => Math.max(1, Math.round(-mean * Math.log(1 - rand() * 0.999)));

const dir = mkdtempSync(join(tmpdir(), 'sftkit-bench-data-'));
try {
  const data = Array.from({ length: records }, () => ({
    instruction: words(4 + length(9)),
    input: rand() < 0.4 ? words(length(15)) : '',
    output: words(length(45)),
  }));
  writeFileSync(join(dir, 'alpaca_data.json'), JSON.stringify(data, null, 2));
  const tok = tokDir !== '' ? Tokenizer.fromDir(tokDir) : Tokenizer.fromSentencePiece(modelFile);
  let t = performance.now();
  convertAlpacaFile(join(dir, 'alpaca_data.json'), join(dir, 'conv.json'));
  const convertS = (performance.now() - t) / 1000;
  t = performance.now();
  const { report } = await preprocess({ datasetType: 'qa', inputGlob: join(dir, 'conv.json'), tokenizer: tok, seqLength, outputDir: join(dir, 'rec'), packing });
  const preS = (performance.now() - t) / 1000;
  console.log(`tokenizer: ${tokDir || modelFile} (${tok.kind}, vocab ${tok.vocabSize}); ${records} records; seq_length ${seqLength}${packing ? ', packed' : ''}`);
  console.log(`data alpaca:     ${convertS.toFixed(2)} s (${Math.round(records / convertS)} samples/s)`);
  console.log(
    `data preprocess: ${preS.toFixed(2)} s, ${Math.round(report.samples_in / preS)} samples/s, ${Math.round(report.total_tokens / preS)} tokens/s ` +
      `(${report.total_tokens} tokens, ${report.rows_out} rows, padding ${(100 * report.padding_fraction).toFixed(1)}%)`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
