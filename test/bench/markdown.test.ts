// The suite's writer of docs/BENCHMARKS.md: sections between markers are replaced, prose is kept byte for byte.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { beginMarker, endMarker, outputToMarkdown, replaceSections, table } from '../../bench/lib/markdown.ts';

const PROSE_BEFORE = '# Benchmarks\n\nHand-written prose, with `code`, trailing spaces   \nand ünïcödé.\n\n';
const PROSE_AFTER = '\n\n## Later section\n\nMore prose.\n\n\n(no final newline)';

test('replaceSections replaces only what is between the markers, keeping the prose byte for byte', () => {
  const doc = `${PROSE_BEFORE}<!-- bench:gemm -->\nold numbers\n| a | b |\n<!-- /bench:gemm -->${PROSE_AFTER}`;
  const out = replaceSections(doc, [{ id: 'gemm', content: '\n| new | table |\n\n' }]);
  assert.equal(out, `${PROSE_BEFORE}<!-- bench:gemm -->\n| new | table |\n<!-- /bench:gemm -->${PROSE_AFTER}`);
  // Idempotent: writing the same content again changes nothing.
  assert.equal(replaceSections(out, [{ id: 'gemm', content: '| new | table |' }]), out);
});

test('replaceSections appends a section that has no markers yet, after the existing text', () => {
  const doc = `${PROSE_BEFORE}<!-- bench:train -->\nx\n<!-- /bench:train -->\n`;
  const out = replaceSections(doc, [{ id: 'train', content: 'y' }, { id: 'generate', content: 'z' }]);
  assert.equal(out, `${PROSE_BEFORE}<!-- bench:train -->\ny\n<!-- /bench:train -->\n\n<!-- bench:generate -->\nz\n<!-- /bench:generate -->\n`);
  assert.equal(replaceSections('text', [{ id: 'a', content: 'b' }]), 'text\n\n<!-- bench:a -->\nb\n<!-- /bench:a -->\n');
  assert.equal(replaceSections('', [{ id: 'a', content: 'b' }]), '<!-- bench:a -->\nb\n<!-- /bench:a -->\n');
});

test('replaceSections leaves other sections and similar ids alone', () => {
  const doc = 'p\n<!-- bench:train-bf16 -->\nbf\n<!-- /bench:train-bf16 -->\nq\n<!-- bench:train -->\nfp\n<!-- /bench:train -->\nr';
  const out = replaceSections(doc, [{ id: 'train', content: 'FP' }]);
  assert.equal(out, 'p\n<!-- bench:train-bf16 -->\nbf\n<!-- /bench:train-bf16 -->\nq\n<!-- bench:train -->\nFP\n<!-- /bench:train -->\nr');
});

test('replaceSections refuses broken or duplicated markers and bad ids', () => {
  assert.throws(() => replaceSections(`${beginMarker('a')}\nx`, [{ id: 'a', content: 'y' }]), /without a matching/);
  assert.throws(() => replaceSections(`x\n${endMarker('a')}`, [{ id: 'a', content: 'y' }]), /without/);
  assert.throws(() => replaceSections(`${beginMarker('a')}${endMarker('a')}${beginMarker('a')}${endMarker('a')}`, [{ id: 'a', content: 'y' }]), /twice/);
  assert.throws(() => replaceSections('', [{ id: 'Bad Id', content: 'y' }]), /lowercase/);
});

test('table renders a markdown table', () => {
  assert.equal(table(['a', 'b'], [['1', '2'], ['3', '4']]), '| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |');
});

test('outputToMarkdown separates paragraphs and keeps tables and fences together', () => {
  const text = 'machine: x\nPyTorch: y\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\ngeo mean 1.0\n```\nkernel  ms\n\ngemm 1\n```\nend   ';
  assert.equal(outputToMarkdown(text), 'machine: x\n\nPyTorch: y\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\ngeo mean 1.0\n\n```\nkernel  ms\n\ngemm 1\n```\n\nend');
});
