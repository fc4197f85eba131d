// Conversation readers: converted schema, ShareGPT with a system field, OpenAI messages; every bad input named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expandGlob, parseConversation, readJsonRecords } from '../../src/data/index.ts';
import { DataError } from '../../src/errors.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'data');

test('the three schemas read into rounds with their system prompt', () => {
  const convs = readJsonRecords(join(FIX, 'conversations.jsonl')).map(parseConversation);
  assert.equal(convs.length, 4);
  assert.deepEqual(convs[0]?.rounds.map((r) => r.user), ['What is the capital of France?', 'And of Italy?', 'Thanks!']);
  assert.equal(convs[0]?.system, null);
  assert.equal(convs[1]?.system, 'You are a terse historian.');
  assert.deepEqual(convs[2], {
    where: `${join(FIX, 'conversations.jsonl')}:3`,
    system: 'Answer in one word.',
    rounds: [{ user: 'Opposite of war?', assistant: 'Peace.' }, { user: 'Opposite of cold?', assistant: 'Hot.' }],
  });
});

const bad = (value: unknown): string => {
  try {
    parseConversation({ value, index: 4, where: 'f.jsonl:5' });
  } catch (e) {
    assert.ok(e instanceof DataError);
    return e.message;
  }
  assert.fail('expected an error');
};

test('bad conversations are errors naming the sample and field', () => {
  assert.equal(bad({ conversations: [{ from: 'human', value: 'a' }, { from: 'robot', value: 'b' }] }), 'f.jsonl:5.conversations[1].from: unknown role "robot" (expected one of human, user, gpt, assistant, chatgpt, bard, bing, model, system)');
  assert.equal(bad({ messages: [{ role: 'assistant', content: 'a' }] }), 'f.jsonl:5.messages[0]: roles out of order: expected a user turn, got assistant');
  assert.equal(bad({ messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] }), 'f.jsonl:5.messages[1]: roles out of order: expected a assistant turn, got user');
  assert.equal(bad({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: '  ' }] }), 'f.jsonl:5.messages[1]: empty assistant reply');
  assert.equal(bad({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 7 }] }), 'f.jsonl:5.messages[1].content: must be a string (number)');
  assert.equal(bad({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }] }), 'f.jsonl:5: the conversation ends with a user turn that has no assistant reply');
  assert.equal(bad({ messages: [{ role: 'user', content: 'a' }, { role: 'system', content: 'b' }] }), 'f.jsonl:5.messages[1]: a system turn must come first');
  assert.match(bad({ instruction: 'x' }), /^f\.jsonl:5: expected a "conversations" array/);
  assert.equal(bad({ conversations: [] }), 'f.jsonl:5: the conversation has no user/assistant round');
});

test('globs expand to sorted files and fail loudly when nothing matches', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sftkit-glob-'));
  mkdirSync(join(dir, 'sub'));
  for (const f of ['b.jsonl', 'a.jsonl', 'c.txt', 'sub/d.jsonl']) writeFileSync(join(dir, f), '');
  assert.deepEqual(expandGlob(join(dir, '*.jsonl')), [join(dir, 'a.jsonl'), join(dir, 'b.jsonl')]);
  assert.deepEqual(expandGlob(join(dir, '**/*.jsonl')), [join(dir, 'a.jsonl'), join(dir, 'b.jsonl'), join(dir, 'sub/d.jsonl')]);
  assert.deepEqual(expandGlob(join(dir, '[ab].jsonl')), [join(dir, 'a.jsonl'), join(dir, 'b.jsonl')]);
  assert.throws(() => expandGlob(join(dir, '*.json')), DataError);
});
