// What bench/train concludes from one config's runs: model FLOP utilisation against the in-process GEMM peak
// of the dtype that ran, and the findings against DESIGN.md's targets. Pure, so that the verdicts are tested.
import type { Finding } from '../lib/report.ts';

/** One engine's JSON line (bench/train/sftkit-step.ts or torch_step.py); the peak fields are sftkit's only. */
export interface StepResult {
  engine: string;
  config: string;
  params: number;
  median_s: number;
  tokens_per_s: number;
  fwd_tokens_per_s: number;
  peak_rss_mb: number;
  dtype?: 'float32' | 'bfloat16';
  gemm_peak_gflops?: number;
  gemm_peak_shape?: string;
  fp32_kernel?: string;
  bf16_gemm_peak_gflops?: number;
  bf16_gemm_peak_shape?: string;
  /** The bf16 GEMM path of the binding (getBf16Path): native vdpbf16ps, fallback or emulated. */
  bf16_path?: 'native' | 'fallback' | 'emulated' | 'amx' | 'amx-emulated';
  bf16_kernel?: string;
  has_avx512_bf16?: boolean;
  peak_method?: string;
}

export interface ModelDims { dim: number; layers: number; seq: number }

/** DESIGN.md's targets for training. */
export const TARGETS = { mfuFp32: 0.9, mfuBf16: 0.85, vsTorch: 1.0, rssVsTorch: 1.0 } as const;
/** The configs whose utilisation DESIGN.md judges; S is recorded only (its small GEMMs cannot reach the peak). */
const MFU_JUDGED = ['M', 'L'];

/** Model FLOPs per trained token: 6N + 12·L·T·d (DESIGN.md). */
export function flopsPerToken(params: number, d: ModelDims): number {
  return 6 * params + 12 * d.layers * d.seq * d.dim;
}

export function modelGflops(r: StepResult, d: ModelDims): number {
  return (r.tokens_per_s * flopsPerToken(r.params, d)) / 1e9;
}

/** The GEMM peak a run in `dtype` is measured against (from sftkit's process of the same config), or null. */
export function peakFor(ours: StepResult, dtype: 'float32' | 'bfloat16'): number | null {
  const p = dtype === 'bfloat16' ? ours.bf16_gemm_peak_gflops : ours.gemm_peak_gflops;
  return p !== undefined && p > 0 ? p : null;
}

/**
 * Whether bf16 utilisation is judged: on CPUs with AVX512_BF16, against the peak of the bf16 kernel that runs
 * there by default (vdpbf16ps on AMD, the fp32 kernel on rounded operands on Intel, where it is the faster one:
 * native/runtime.cc). Elsewhere the bf16 GEMM can only be the fp32 kernel fed rounded operands: recorded.
 */
export function bf16Judged(r: StepResult): { judged: boolean; why: string } {
  if (r.bf16_path === 'amx') return { judged: true, why: 'AMX tiles (tdpbf16ps)' };
  if (r.bf16_path === 'native') return { judged: true, why: 'vdpbf16ps (AVX512_BF16)' };
  if (r.has_avx512_bf16 === false) return { judged: false, why: 'not judged: this CPU has no AVX512_BF16, bf16 GEMMs run the fp32 fallback' };
  if (r.bf16_path === 'fallback' && r.has_avx512_bf16 === true) return { judged: true, why: 'the fp32 kernel on rounded operands, faster than vdpbf16ps on this CPU' };
  return { judged: false, why: `not judged: bf16 path ${r.bf16_path ?? 'unknown'}` };
}

const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const times = (x: number): string => `${x.toFixed(2)}×`;

/**
 * One config's findings. fp32 mode: speed and peak RSS against tuned PyTorch, fp32 utilisation. bf16 mode
 * (`bf16` given): the same for bf16 against PyTorch autocast, bf16 utilisation against the bf16 peak, and our
 * bf16 speed over our fp32 speed; the fp32 rows of that run are context and give no findings.
 */
export function trainFindings(opts: {
  name: string;
  dims: ModelDims;
  ours: StepResult;
  torch: StepResult;
  bf16?: { ours: StepResult; torch: StepResult };
}): Finding[] {
  const { name, dims } = opts;
  const findings: Finding[] = [];
  const judgedSize = MFU_JUDGED.includes(name);
  if (!opts.bf16) {
    const { ours, torch } = opts;
    const ratio = ours.tokens_per_s / torch.tokens_per_s;
    findings.push({ figure: `training tok/s fp32, ${name}, vs tuned PyTorch`, target: `≥ ${times(TARGETS.vsTorch)}`, measured: times(ratio), met: ratio >= TARGETS.vsTorch });
    const peak = peakFor(ours, 'float32');
    if (peak !== null) {
      const mfu = modelGflops(ours, dims) / peak;
      findings.push({
        figure: `fp32 model FLOP utilisation, ${name}, of the fp32 GEMM peak (${peak.toFixed(0)} GFLOP/s in the same process)`,
        target: judgedSize ? `≥ ${pct(TARGETS.mfuFp32)}` : '(recorded)', measured: pct(mfu), met: judgedSize ? mfu >= TARGETS.mfuFp32 : null,
      });
    }
    const rss = ours.peak_rss_mb / torch.peak_rss_mb;
    findings.push({ figure: `training peak RSS fp32, ${name}, vs PyTorch`, target: `≤ ${times(TARGETS.rssVsTorch)}`, measured: times(rss), met: rss <= TARGETS.rssVsTorch });
    return findings;
  }
  const { ours, torch } = opts.bf16;
  const ratio = ours.tokens_per_s / torch.tokens_per_s;
  findings.push({ figure: `training tok/s bf16, ${name}, vs PyTorch bf16 autocast`, target: `≥ ${times(TARGETS.vsTorch)}`, measured: times(ratio), met: ratio >= TARGETS.vsTorch });
  const peak = peakFor(ours, 'bfloat16');
  if (peak !== null) {
    const mfu = modelGflops(ours, dims) / peak;
    const { judged, why } = bf16Judged(ours);
    const onTarget = judgedSize && judged;
    findings.push({
      figure: `bf16 model FLOP utilisation, ${name}, of the bf16 GEMM peak (${peak.toFixed(0)} GFLOP/s in the same process; ${why})`,
      target: judgedSize ? `≥ ${pct(TARGETS.mfuBf16)} (AVX512_BF16 CPUs)` : '(recorded)', measured: pct(mfu), met: onTarget ? mfu >= TARGETS.mfuBf16 : null,
    });
  }
  const rss = ours.peak_rss_mb / torch.peak_rss_mb;
  findings.push({ figure: `training peak RSS bf16, ${name}, vs PyTorch bf16 autocast`, target: `≤ ${times(TARGETS.rssVsTorch)}`, measured: times(rss), met: rss <= TARGETS.rssVsTorch });
  findings.push({ figure: `training tok/s, ${name}, sftkit bf16 over sftkit fp32`, target: '(recorded)', measured: times(ours.tokens_per_s / opts.ours.tokens_per_s), met: null });
  return findings;
}
