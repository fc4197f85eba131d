// The suite's writer of docs/BENCHMARKS.md: sections between markers are replaced inside their CPU's block,
// prose and other CPUs' blocks are kept byte for byte.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { beginMarker, cpuBeginMarker, cpuEndMarker, endMarker, outputToMarkdown, replaceCpuSections, replaceSections, table } from '../../bench/lib/markdown.ts';

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

const XEON = { key: 'intel-xeon-processor-f6-m207-avx512', label: 'Intel(R) Xeon(R) Processor (GenuineIntel family 6 model 207; AVX-512, no AVX512_BF16)' };
const EPYC = { key: 'amd-epyc-f25-m17-avx512-bf16', label: 'AMD EPYC (AuthenticAMD family 25 model 17; AVX-512, AVX512_BF16)' };
// Another CPU's block, with odd bytes (trailing spaces, no blank lines, a section of the same id) that must survive.
const XEON_BLOCK = `${cpuBeginMarker(XEON.key)}\n## ${XEON.label}\n\nhand note   \n${beginMarker('gemm')}\nxeon gemm ünï\n${endMarker('gemm')}\n${beginMarker('train')}\nxeon train\n${endMarker('train')}\n${cpuEndMarker(XEON.key)}`;

test('replaceCpuSections adds a new CPU block after the last one, keeping other CPUs byte for byte', () => {
  const doc = `${PROSE_BEFORE}${XEON_BLOCK}${PROSE_AFTER}`;
  const out = replaceCpuSections(doc, { cpu: EPYC, sections: [{ id: 'cpu', content: 'EPYC, 2 cores' }, { id: 'gemm', content: 'epyc gemm' }] });
  const epyc = `${cpuBeginMarker(EPYC.key)}\n## ${EPYC.label}\n\n${beginMarker('cpu')}\nEPYC, 2 cores\n${endMarker('cpu')}\n\n${beginMarker('gemm')}\nepyc gemm\n${endMarker('gemm')}\n${cpuEndMarker(EPYC.key)}`;
  assert.equal(out, `${PROSE_BEFORE}${XEON_BLOCK}\n\n${epyc}${PROSE_AFTER}`);
  // A second run on the EPYC replaces its gemm section, appends its new train section inside its block, and leaves the Xeon's gemm alone.
  const again = replaceCpuSections(out, { cpu: EPYC, sections: [{ id: 'gemm', content: 'epyc gemm 2' }, { id: 'train', content: 'epyc train' }] });
  const epyc2 = `${cpuBeginMarker(EPYC.key)}\n## ${EPYC.label}\n\n${beginMarker('cpu')}\nEPYC, 2 cores\n${endMarker('cpu')}\n\n${beginMarker('gemm')}\nepyc gemm 2\n${endMarker('gemm')}\n\n${beginMarker('train')}\nepyc train\n${endMarker('train')}\n${cpuEndMarker(EPYC.key)}`;
  assert.equal(again, `${PROSE_BEFORE}${XEON_BLOCK}\n\n${epyc2}${PROSE_AFTER}`);
  // And a run on the Xeon touches only the Xeon's block: the EPYC's comes through byte for byte.
  const xeon = replaceCpuSections(again, { cpu: XEON, sections: [{ id: 'train', content: 'xeon train 2' }] });
  assert.equal(xeon, `${PROSE_BEFORE}${XEON_BLOCK.replace('xeon train\n', 'xeon train 2\n')}\n\n${epyc2}${PROSE_AFTER}`);
  // Idempotent.
  assert.equal(replaceCpuSections(xeon, { cpu: XEON, sections: [{ id: 'train', content: 'xeon train 2' }] }), xeon);
});

test('replaceCpuSections starts the first CPU block at the end of a document without one', () => {
  const out = replaceCpuSections('# Benchmarks\n', { cpu: XEON, sections: [{ id: 'suite', content: 's' }] });
  assert.equal(out, `# Benchmarks\n\n${cpuBeginMarker(XEON.key)}\n## ${XEON.label}\n\n${beginMarker('suite')}\ns\n${endMarker('suite')}\n${cpuEndMarker(XEON.key)}\n`);
  // A similar key (the same CPU with AVX512_BF16) is another block.
  const bf16 = { key: `${XEON.key}-bf16`, label: 'x' };
  const two = replaceCpuSections(out, { cpu: bf16, sections: [{ id: 'suite', content: 't' }] });
  assert.ok(two.startsWith(out.slice(0, -1)));
  assert.equal(replaceCpuSections(two, { cpu: XEON, sections: [{ id: 'suite', content: 's' }] }), two);
  // Prose quoting the markers' syntax is not a block: the first block still goes at the end.
  const quoted = 'Blocks end with `<!-- /bench-cpu:KEY -->` or <!-- /bench-cpu:abc --> inline.\n';
  assert.ok(replaceCpuSections(quoted, { cpu: XEON, sections: [{ id: 'suite', content: 's' }] }).startsWith(`${quoted}\n${cpuBeginMarker(XEON.key)}`));
});

test('replaceCpuSections refuses broken or duplicated CPU markers and bad keys', () => {
  const sections = [{ id: 'a', content: 'y' }];
  assert.throws(() => replaceCpuSections(`${cpuBeginMarker('k')}\nx`, { cpu: { key: 'k', label: 'K' }, sections }), /without a matching/);
  assert.throws(() => replaceCpuSections(`x\n${cpuEndMarker('k')}`, { cpu: { key: 'k', label: 'K' }, sections }), /without/);
  assert.throws(() => replaceCpuSections(`${cpuBeginMarker('k')}${cpuEndMarker('k')}${cpuBeginMarker('k')}${cpuEndMarker('k')}`, { cpu: { key: 'k', label: 'K' }, sections }), /twice/);
  assert.throws(() => replaceCpuSections('', { cpu: { key: 'Intel Xeon', label: 'K' }, sections }), /lowercase/);
});

test('docs/BENCHMARKS.md: every measured section sits in a CPU block, and a new CPU leaves every byte in place', () => {
  const doc = readFileSync(new URL('../../docs/BENCHMARKS.md', import.meta.url), 'utf8');
  // Outside the CPU blocks, no section markers (a stray one would never be rewritten).
  const outside = doc.replace(/<!-- bench-cpu:([a-z0-9-]+) -->[\s\S]*?<!-- \/bench-cpu:\1 -->/g, '');
  assert.doesNotMatch(outside, /^<!-- \/?bench:/m);
  assert.match(doc, /<!-- bench-cpu:intel-xeon-processor-f6-m207-avx512 -->\n## Intel\(R\) Xeon\(R\) Processor \(GenuineIntel family 6 model 207; AVX-512, no AVX512_BF16\)\n/);
  const out = replaceCpuSections(doc, { cpu: EPYC, sections: [{ id: 'suite', content: 'x' }] });
  const added = out.indexOf(cpuBeginMarker(EPYC.key));
  const block = out.slice(added, out.indexOf(cpuEndMarker(EPYC.key)) + cpuEndMarker(EPYC.key).length);
  assert.equal(out.slice(0, added - 2) + out.slice(added + block.length), doc);
});

test('table renders a markdown table', () => {
  assert.equal(table(['a', 'b'], [['1', '2'], ['3', '4']]), '| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |');
});

test('outputToMarkdown separates paragraphs and keeps tables and fences together', () => {
  const text = 'machine: x\nPyTorch: y\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\ngeo mean 1.0\n```\nkernel  ms\n\ngemm 1\n```\nend   ';
  assert.equal(outputToMarkdown(text), 'machine: x\n\nPyTorch: y\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\ngeo mean 1.0\n\n```\nkernel  ms\n\ngemm 1\n```\n\nend');
});
