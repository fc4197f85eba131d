// The seeded fuzz campaign in CI: 1,000 mutated cases per parser of untrusted input (SFTKIT_FUZZ_CASES sets
// another count), each of which must parse or fail with a typed sftkit error naming the file, within 2 s and
// without a memory blow-up. `node --import tsx test/fuzz/run.ts --cases 100000` is the long campaign.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runTarget } from './harness.ts';
import { TARGETS } from './targets.ts';

const CASES = Number(process.env['SFTKIT_FUZZ_CASES'] ?? 1000);
const SEED = Number(process.env['SFTKIT_FUZZ_SEED'] ?? 1);

// The yaml library reports odd aliases through process warnings; they are expected here.
process.removeAllListeners('warning');

test('every parser of untrusted input has a fuzz target', () => {
  assert.deepEqual(TARGETS.map((t) => t.name), [
    'safetensors', 'safetensors-index', 'torch-bin', 'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'config.json',
    'generation_config.json', 'alpaca', 'conversations', 'json-stream', 'token-records', 'yaml-config', 'checkpoint-dir', 'training-checkpoint', 'gguf',
    'mindspore-ckpt', 'mindrecord', 'openai-request', 'peft-adapter',
  ]);
});

for (const target of TARGETS) {
  test(`${target.name}: ${CASES} mutated cases give success or a typed error naming the file`, { timeout: 300_000 }, () => {
    const report = runTarget(target, { cases: CASES, seed: SEED });
    const bad = report.failures.map((f) => `case ${f.index} ${f.outcome} (${f.file}): ${f.detail}`).join('\n\n');
    assert.equal(report.counts.crash + report.counts.unnamed + report.counts.hang + report.counts.blowup, 0, `replay with: node --import tsx test/fuzz/run.ts --target ${target.name} --seed ${SEED} --case N\n${bad}`);
    assert.equal(report.counts.ok + report.counts.typed, CASES);
    // The mutators must reach the checks: most cases are caught, and some still load.
    assert.ok(report.counts.typed > CASES / 3, `${target.name}: only ${report.counts.typed} of ${CASES} cases were refused`);
    assert.ok(report.counts.ok > 0, `${target.name}: no mutated case loaded`);
  });
}
