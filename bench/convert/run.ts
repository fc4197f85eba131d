// Streaming conversion benchmark: generates a synthetic Llama-2-7B-shaped bf16 safetensors checkpoint (5 GB
// shards), runs `sftkit convert` on it in a child process while sampling that process's anonymous RSS, and
// deletes everything afterwards. Usage: node --import tsx bench/convert/run.ts [--layers 32] [--dir /tmp]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/models/config.ts';
import { expectedTensors } from '../../src/models/tensor-table.ts';
import { writeSafetensorsSharded, byteSize, type TensorSpec } from '../../src/formats/safetensors-writer.ts';
import { emitFindings } from '../lib/report.ts';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const layers = Number(arg('layers', '32'));
const root = mkdtempSync(join(arg('dir', tmpdir()), 'sftkit-bench-convert-'));

const config = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 4096, intermediate_size: 11008,
  num_hidden_layers: layers, num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000,
  max_position_embeddings: 4096, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'bfloat16',
};

function rssAnonKb(pid: number): number {
  try {
    const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

try {
  const hf = join(root, 'hf');
  const specs: TensorSpec[] = expectedTensors(parseModelConfig(config, 'config.json')).map((t) => ({ name: t.name, dtype: 'BF16', shape: t.shape }));
  // One random block repeated: generation cost stays low, the converter still moves every byte.
  const block = new Uint8Array(1 << 20).map(() => Math.floor(Math.random() * 256));
  const t0 = performance.now();
  const { mkdirSync } = await import('node:fs');
  mkdirSync(hf);
  writeSafetensorsSharded(hf, specs, (s) => {
    const out = new Uint8Array(byteSize(s));
    for (let o = 0; o < out.byteLength; o += block.byteLength) out.set(block.subarray(0, Math.min(block.byteLength, out.byteLength - o)), o);
    return out;
  }, { maxShardBytes: 5e9 });
  writeFileSync(join(hf, 'config.json'), JSON.stringify(config));
  const totalBytes = specs.reduce((s, t) => s + byteSize(t), 0);
  const largest = Math.max(...specs.map(byteSize));
  console.log(`generated ${(totalBytes / 1e9).toFixed(2)} GB (${specs.length} tensors) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const cli = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
  const t1 = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'convert', '--input_path', hf, '--output_path', join(root, 'ckpt')], { stdio: ['inherit', process.stderr, 'inherit'] }); // its progress goes to stderr: stdout is the report
  let peakKb = 0;
  const timer = setInterval(() => (peakKb = Math.max(peakKb, rssAnonKb(child.pid!))), 20);
  const code: number = await new Promise((res) => child.on('exit', (c) => res(c ?? 1)));
  clearInterval(timer);
  const seconds = (performance.now() - t1) / 1000;
  if (code !== 0) throw new Error(`convert exited with ${code}`);
  const result = {
    layers, gb: totalBytes / 1e9, seconds, gbPerSecond: totalBytes / 1e9 / seconds,
    peakAnonRssMb: peakKb / 1024, largestTensorMb: largest / 2 ** 20, boundMb: largest / 2 ** 20 + 512,
  };
  console.error(JSON.stringify(result));
  emitFindings([{ figure: `conversion peak anonymous RSS, 7B shapes (${layers} layers)`, target: `≤ ${result.boundMb.toFixed(0)} MB`, measured: `${result.peakAnonRssMb.toFixed(0)} MB`, met: result.peakAnonRssMb <= result.boundMb }]);
  console.log('| checkpoint | size | time | throughput | peak anonymous RSS | bound (largest tensor + 512 MB) |\n|---|---|---|---|---|---|');
  console.log(`| Llama-2-7B shape, ${layers} layers, bf16 safetensors | ${result.gb.toFixed(2)} GB | ${seconds.toFixed(1)} s | ${result.gbPerSecond.toFixed(2)} GB/s | ${result.peakAnonRssMb.toFixed(0)} MB | ${result.boundMb.toFixed(0)} MB |`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
