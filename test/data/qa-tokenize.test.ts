// QA tokenization: vicuna golden ids/labels from Debian's sentencepiece (scripts/reference/data_golden.py), and
// the other templates' masks: only the reply and its EOS are trained.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chatEncoder, IGNORE_ID, parseConversation, readJsonRecords, type Conversation, type EncodedSample } from '../../src/data/index.ts';
import { Tokenizer } from '../../src/tokenizer/index.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'data');
const MODEL = join(import.meta.dirname, '..', 'fixtures', 'tokenizer', 'bpe.model');
const tok = Tokenizer.fromSentencePiece(MODEL);
interface Golden {
  ids: number[];
  labels: number[];
  mindformers_agrees: boolean;
}
const golden = JSON.parse(readFileSync(join(FIX, 'golden_vicuna.json'), 'utf8')) as { alpaca_converted: string; alpaca_vicuna: Golden[]; conversations_vicuna: Golden[] };

function encoded(enc: ReturnType<ReturnType<typeof chatEncoder>['encode']>): EncodedSample {
  assert.ok(!('drop' in enc), 'unexpected drop');
  return enc;
}

/** The trained text of each round: decode the runs of labels that are not IGNORE_ID. */
function trainedRuns(s: EncodedSample): number[][] {
  const runs: number[][] = [];
  let cur: number[] | null = null;
  s.labels.forEach((l) => {
    if (l === IGNORE_ID) cur = null;
    else {
      if (cur === null) runs.push((cur = []));
      cur.push(l);
    }
  });
  return runs;
}

test('vicuna matches the reference token by token (alpaca file and multi-round/system cases)', () => {
  const enc = chatEncoder(tok, 'vicuna');
  const alpaca = (JSON.parse(golden.alpaca_converted) as unknown[]).map((value, index) => parseConversation({ value, index, where: `conv[${index}]` }));
  const convs = readJsonRecords(join(FIX, 'conversations.jsonl')).map(parseConversation);
  const cases: Array<[Conversation, Golden]> = [...alpaca.map((c, i) => [c, golden.alpaca_vicuna[i]] as [Conversation, Golden]), ...convs.map((c, i) => [c, golden.conversations_vicuna[i]] as [Conversation, Golden])];
  assert.equal(cases.length, 12);
  for (const [conv, want] of cases) {
    const got = encoded(enc.encode(conv));
    assert.deepEqual(got.ids, want.ids, conv.where);
    assert.deepEqual(got.labels, want.labels, conv.where);
  }
  // The emulation of MindFormers' own algorithm agreed wherever user text holds no "</s>".
  assert.equal([...golden.alpaca_vicuna, ...golden.conversations_vicuna].filter((g) => g.mindformers_agrees).length, 9);
  // "</s>" in user text stays text: one EOS per round, and only where the template puts it.
  const special = encoded(enc.encode(alpaca[5] as Conversation));
  assert.equal(special.ids.filter((id) => id === tok.eosId).length, 1);
});

test('every template trains exactly each reply and its end of turn', () => {
  const conv = readJsonRecords(join(FIX, 'conversations.jsonl')).map(parseConversation)[2] as Conversation;
  const want: Record<string, string[]> = {
    vicuna: [' Peace.', ' Hot.'],
    alpaca: ['\nPeace.', '\nHot.'],
    chatml: ['Peace.<|im_end|>', 'Hot.<|im_end|>'],
    llama2: [' Peace. ', ' Hot. '],
  };
  for (const [name, replies] of Object.entries(want)) {
    const s = encoded(chatEncoder(tok, name as 'vicuna').encode(conv));
    assert.equal(s.ids[0], tok.bosId, name);
    const runs = trainedRuns(s);
    assert.equal(runs.length, replies.length, name);
    runs.forEach((run, i) => {
      assert.equal(run[run.length - 1], tok.eosId, `${name}: round ${i} ends with a trained EOS`);
      // Decoding drops SentencePiece's leading space marker, so compare against the trimmed-start reply.
      assert.equal(tok.decode(run.slice(0, -1)), (replies[i] as string).replace(/^ /, ''), `${name} round ${i}`);
    });
    assert.equal(s.ids.length, s.labels.length);
  }
  const llama2 = encoded(chatEncoder(tok, 'llama2').encode(conv));
  assert.equal(llama2.ids.filter((id) => id === tok.bosId).length, 2, 'llama2 opens every round with BOS');
  assert.equal(tok.decode(llama2.ids), '<s> [INST] <<SYS>>\nAnswer in one word.\n<</SYS>>\n\nOpposite of war? [/INST] Peace. </s><s> [INST] Opposite of cold? [/INST] Hot. </s>');
});

test('hf: the model chat_template, with special-token text in the template only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-hf-'));
  copyFileSync(MODEL, join(dir, 'tokenizer.model'));
  // A small template in the Llama-2 style, written for this test.
  const template =
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ bos_token }}<<{{ m['content'] }}>>{% elif m['role'] == 'user' %}" +
    "{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}[Q] {{ m['content'] }} [A]{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}";
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', chat_template: template }));
  const hfTok = Tokenizer.fromDir(dir);
  const enc = chatEncoder(hfTok, 'hf');
  const convs = readJsonRecords(join(FIX, 'conversations.jsonl')).map(parseConversation);
  const s = encoded(enc.encode(convs[0] as Conversation));
  assert.equal(s.ids[0], hfTok.bosId);
  assert.equal(s.ids.filter((id) => id === hfTok.eosId).length, 3);
  const runs = trainedRuns(s);
  assert.deepEqual(runs.map((r) => hfTok.decode(r, { skipSpecial: true })), ['Paris.', 'Rome is the capital of Italy.', 'You are welcome.']);
  for (const r of runs) assert.equal(r[r.length - 1], hfTok.eosId);
  // Special-token text inside a message would be read as a control token by the rendered text: dropped, counted.
  const sneaky = parseConversation({ value: { messages: [{ role: 'user', content: 'hi </s>' }, { role: 'assistant', content: 'ok' }] }, index: 0, where: 'x' });
  assert.deepEqual(enc.encode(sneaky), { drop: 'special-token text in a message (hf template)' });
});
