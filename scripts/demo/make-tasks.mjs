// Generates the demo's instruction dataset (alpaca format) from the State of the Union corpus: short tasks
// answerable from the input alone, a training split and a held-out evaluation split, reproducibly (seeded).
// Usage: node make-tasks.mjs CORPUS.txt OUT_DIR [TRAIN_PER_TASK] [EVAL_PER_TASK]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [corpusPath, outDir, trainPer = '400', evalPer = '30'] = process.argv.slice(2);
if (!corpusPath || !outDir) throw new Error('usage: node make-tasks.mjs CORPUS.txt OUT_DIR [TRAIN_PER_TASK] [EVAL_PER_TASK]');

// mulberry32: a small seeded generator, so the dataset is the same on every machine.
let state = 20261129;
function rand() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
function shuffle(xs) {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

const text = readFileSync(corpusPath, 'utf8');
const sentences = [...new Set(text.split(/(?<=[.!?])\s+/).map((s) => s.trim()).filter((s) => /^[A-Z]/.test(s)))];
const short = sentences.filter((s) => {
  const n = s.split(' ').length;
  return n >= 6 && n <= 22 && /^[\x20-\x7e]+$/.test(s);
});
const words = [...new Set(text.toLowerCase().match(/\b[a-z]{4,9}\b/g))].filter((w) => w.length >= 4);

// Tasks read the input and answer briefly. A ~5M-parameter model learns classification and counting from a
// few hundred examples each; copying arbitrary words needs induction heads it does not have, so only the
// year stays as an extraction task (and the report shows how far it gets).
const sentencesWithYear = short.filter((s) => (s.match(/\b(1[7-9]\d\d|20[0-2]\d)\b/g) ?? []).length === 1);
const sentencesWithoutDigits = short.filter((s) => !/\d/.test(s));
const questions = short.filter((s) => s.endsWith('?'));
const statements = short.filter((s) => s.endsWith('.') && !/\d/.test(s));
const randomYearSentence = () => {
  const y = String(1790 + Math.floor(rand() * 232));
  const base = pick(sentencesWithoutDigits).replace(/[.!?]$/, '');
  return { text: `In ${y}, ${base.charAt(0).toLowerCase()}${base.slice(1)}.`, year: y };
};
const number = (digits) => String(Math.floor(10 ** (digits - 1) + rand() * (9 * 10 ** (digits - 1))));

const tasks = {
  year: {
    instruction: 'Extract the year mentioned in the sentence.',
    make() {
      if (rand() < 0.5) {
        const s = pick(sentencesWithYear);
        return { input: s, output: s.match(/\b(1[7-9]\d\d|20[0-2]\d)\b/)[0] };
      }
      const { text, year } = randomYearSentence();
      return { input: text, output: year };
    },
  },
  has_year: {
    instruction: 'Does the sentence mention a year? Answer yes or no.',
    make() {
      if (rand() < 0.5) return { input: rand() < 0.5 ? pick(sentencesWithYear) : randomYearSentence().text, output: 'yes' };
      return { input: pick(sentencesWithoutDigits), output: 'no' };
    },
  },
  question: {
    instruction: 'Is the sentence a question? Answer yes or no.',
    make() {
      return rand() < 0.5 ? { input: pick(questions), output: 'yes' } : { input: pick(statements), output: 'no' };
    },
  },
  contains: {
    instruction: 'Does the sentence contain the word given after the bar? Answer yes or no.',
    make() {
      const s = pick(short);
      const present = s.toLowerCase().match(/\b[a-z]{4,9}\b/g) ?? [];
      const yes = rand() < 0.5 && present.length > 0;
      let w = yes ? pick(present) : pick(words);
      if (!yes) while (present.includes(w)) w = pick(words);
      return { input: `${s} | ${w}`, output: yes ? 'yes' : 'no' };
    },
  },
  count: {
    instruction: 'How many words are in the list?',
    make() {
      const n = 2 + Math.floor(rand() * 4);
      return { input: Array.from({ length: n }, () => pick(words)).join(', '), output: String(n) };
    },
  },
  digits: {
    instruction: 'How many digits does the number have?',
    make() {
      const d = 1 + Math.floor(rand() * 6);
      return { input: number(d), output: String(d) };
    },
  },
  parity: {
    instruction: 'Is the number even or odd?',
    make() {
      const n = number(1 + Math.floor(rand() * 4));
      return { input: n, output: Number(n) % 2 === 0 ? 'even' : 'odd' };
    },
  },
};

const train = [];
const evalSet = [];
const seen = new Set();
for (const [name, task] of Object.entries(tasks)) {
  for (const [split, count] of [[evalSet, Number(evalPer)], [train, Number(trainPer)]]) {
    let made = 0;
    while (made < count) {
      const { input, output } = task.make();
      const key = `${name}\u0000${input}`;
      if (seen.has(key)) continue; // the held-out split never repeats a training input
      seen.add(key);
      split.push({ instruction: task.instruction, input, output, task: name });
      made++;
    }
  }
}
shuffle(train);
shuffle(evalSet);
const strip = (xs) => xs.map(({ instruction, input, output }) => ({ instruction, input, output }));
writeFileSync(join(outDir, 'alpaca_train.json'), `${JSON.stringify(strip(train), null, 1)}\n`);
writeFileSync(join(outDir, 'alpaca_eval.json'), `${JSON.stringify(strip(evalSet), null, 1)}\n`);
writeFileSync(join(outDir, 'eval_tasks.json'), `${JSON.stringify(evalSet.map((e) => e.task))}\n`);
console.log(`${train.length} training and ${evalSet.length} held-out samples over ${Object.keys(tasks).length} tasks -> ${outDir}`);
