// Reference attention (forward and backward): the plain O(T·S) algorithm per head of native/kernels/attention.cc,
// one query row at a time with its full score row and double accumulators, so results match the addon's scalar
// path up to exp/log's last double ulp. GQA (Hq a multiple of Hkv), a causal mask with a query offset (KV-cache
// decoding), optional segment ids for packed rows, and k/v with a batch stride (a KV cache longer than S).
import type { ByteOffset, Handle } from '../binding.ts';
import { dim, fail, finiteArg, flag, prod, tensorName } from './args.ts';
import { f32, i32opt } from './memory.ts';

const fr = Math.fround;

interface Dims {
  B: number; T: number; S: number; Hq: number; Hkv: number; D: number; kvbs: number; qOffset: number;
  scale: number; causal: boolean; window: number;
  qElems: number; kvElems: number; kvDense: number; lseElems: number;
}

function attnDims(
  op: string, B: number, T: number, S: number, Hq: number, Hkv: number, D: number, kvbs: number, qOffset: number,
  scale: number, causal: boolean, window: number,
): Dims {
  dim(op, 'B', B);
  dim(op, 'T', T);
  dim(op, 'S', S);
  dim(op, 'Hq', Hq);
  dim(op, 'Hkv', Hkv);
  dim(op, 'D', D);
  dim(op, 'kvBatchStride', kvbs);
  dim(op, 'qOffset', qOffset);
  const sc = finiteArg(op, 'scale', scale);
  flag(op, 'causal', causal);
  dim(op, 'window', window);
  const shapes = ` (B=${B}, T=${T}, S=${S}, Hq=${Hq}, Hkv=${Hkv}, D=${D})`;
  if (Hq < 1 || Hkv < 1 || D < 1) fail(op, `Hq, Hkv and D must be >= 1${shapes}`);
  if (Hq % Hkv !== 0) fail(op, `Hq must be a multiple of Hkv${shapes}`);
  const row = prod(op, [S, Hkv, D]);
  if (kvbs < row) fail(op, `kvBatchStride ${kvbs} is smaller than S*Hkv*D = ${row}${shapes}`);
  const kvElems = B === 0 ? 0 : prod(op, [B - 1, kvbs]) + row;
  if (kvElems > 2 ** 50) fail(op, `shape too large${shapes}`);
  return {
    B, T, S, Hq, Hkv, D, kvbs, qOffset, scale: sc, causal, window,
    qElems: prod(op, [B, T, Hq, D]), kvElems, kvDense: prod(op, [B, S, Hkv, D]), lseElems: prod(op, [B, Hq, T]),
  };
}

function segments(
  op: string, m: Dims, qSeg: Handle, qSegOff: ByteOffset, kSeg: Handle, kSegOff: ByteOffset,
): { qs: Int32Array | null; ks: Int32Array | null } {
  const qs = i32opt(op, tensorName('qSeg', [m.B, m.T]), qSeg, qSegOff, prod(op, [m.B, m.T]), false);
  const ks = i32opt(op, tensorName('kSeg', [m.B, m.S]), kSeg, kSegOff, prod(op, [m.B, m.S]), false);
  if ((qs === null) !== (ks === null)) fail(op, 'qSeg and kSeg must be given together');
  return { qs, ks };
}

/**
 * Scaled scores of query (b, t, h) against every key into sc (masked keys -inf); returns their max. Query t
 * sits at key position t + qOffset: with `causal` it sees keys s <= t + qOffset, with a sliding window (> 0)
 * only keys s > t + qOffset - window, and with segment ids only keys of its own segment.
 */
function scoreRow(
  m: Dims, q: Float32Array, k: Float32Array, qs: Int32Array | null, ks: Int32Array | null,
  b: number, t: number, h: number, sc: Float64Array,
): number {
  const kvh = Math.floor(h / (m.Hq / m.Hkv));
  const q0 = ((b * m.T + t) * m.Hq + h) * m.D;
  let mx = -Infinity;
  for (let s = 0; s < m.S; s++) {
    if ((m.causal && s > t + m.qOffset) || (m.window > 0 && s <= t + m.qOffset - m.window) || (qs !== null && qs[b * m.T + t] !== ks![b * m.S + s])) {
      sc[s] = -Infinity;
      continue;
    }
    const k0 = b * m.kvbs + (s * m.Hkv + kvh) * m.D;
    let dot = 0;
    for (let d = 0; d < m.D; d++) dot += q[q0 + d]! * k[k0 + d]!;
    const v = dot * m.scale;
    sc[s] = v;
    if (v > mx) mx = v;
  }
  return mx;
}

/**
 * q (B,T,Hq,D); k, v (B,S,Hkv,D) with batch stride kvBatchStride elements; out (B,T,Hq,D); lse (B,Hq,T), the
 * natural-log sum-exp of the scaled scores. Rows that see no key get zeros and lse = -inf.
 */
export function attentionForward(
  q: Handle, qOff: ByteOffset, k: Handle, kOff: ByteOffset, v: Handle, vOff: ByteOffset,
  out: Handle, outOff: ByteOffset, lse: Handle, lseOff: ByteOffset,
  qSeg: Handle, qSegOff: ByteOffset, kSeg: Handle, kSegOff: ByteOffset,
  B: number, T: number, S: number, Hq: number, Hkv: number, D: number, kvBatchStride: number, qOffset: number,
  scale: number, causal: boolean, window = 0,
): void {
  const op = 'attentionForward';
  const m = attnDims(op, B, T, S, Hq, Hkv, D, kvBatchStride, qOffset, scale, causal, window);
  const qv = f32(op, tensorName('q', [B, T, Hq, D]), q, qOff, m.qElems, false);
  const kv = f32(op, tensorName('k', [B, S, Hkv, D]), k, kOff, m.kvElems, false);
  const vv = f32(op, tensorName('v', [B, S, Hkv, D]), v, vOff, m.kvElems, false);
  const ov = f32(op, tensorName('out', [B, T, Hq, D]), out, outOff, m.qElems, true);
  const lv = f32(op, tensorName('lse', [B, Hq, T]), lse, lseOff, m.lseElems, true);
  const { qs, ks } = segments(op, m, qSeg, qSegOff, kSeg, kSegOff);
  const sc = new Float64Array(S), acc = new Float64Array(D);
  const group = Hq / Hkv;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < Hq; h++) {
        const kvh = Math.floor(h / group);
        const o0 = ((b * T + t) * Hq + h) * D;
        const l0 = (b * Hq + h) * T + t;
        const mx = scoreRow(m, qv, kv, qs, ks, b, t, h, sc);
        if (mx === -Infinity) {
          ov.fill(0, o0, o0 + D);
          lv[l0] = -Infinity;
          continue;
        }
        let sum = 0;
        acc.fill(0);
        for (let s = 0; s < S; s++) {
          if (sc[s] === -Infinity) continue;
          const p = Math.exp(sc[s]! - mx);
          sum += p;
          const v0 = b * m.kvbs + (s * Hkv + kvh) * D;
          for (let d = 0; d < D; d++) acc[d] = acc[d]! + p * vv[v0 + d]!;
        }
        for (let d = 0; d < D; d++) ov[o0 + d] = acc[d]! / sum;
        lv[l0] = mx + Math.log(sum);
      }
    }
  }
}

/**
 * p = exp(score - lse); dp_s = dout . v_s; ds = p * (dp - sum_s p dp) * scale; dq = sum_s ds k_s; dk_s += ds q;
 * dv_s += p dout. dq (B,T,Hq,D), dk, dv (B,S,Hkv,D) contiguous, all overwritten; rows with lse = -inf add nothing.
 */
export function attentionBackward(
  q: Handle, qOff: ByteOffset, k: Handle, kOff: ByteOffset, v: Handle, vOff: ByteOffset,
  out: Handle, outOff: ByteOffset, lse: Handle, lseOff: ByteOffset, dout: Handle, doutOff: ByteOffset,
  dq: Handle, dqOff: ByteOffset, dk: Handle, dkOff: ByteOffset, dv: Handle, dvOff: ByteOffset,
  qSeg: Handle, qSegOff: ByteOffset, kSeg: Handle, kSegOff: ByteOffset,
  B: number, T: number, S: number, Hq: number, Hkv: number, D: number, kvBatchStride: number, qOffset: number,
  scale: number, causal: boolean, window = 0,
): void {
  const op = 'attentionBackward';
  const m = attnDims(op, B, T, S, Hq, Hkv, D, kvBatchStride, qOffset, scale, causal, window);
  const qv = f32(op, tensorName('q', [B, T, Hq, D]), q, qOff, m.qElems, false);
  const kv = f32(op, tensorName('k', [B, S, Hkv, D]), k, kOff, m.kvElems, false);
  const vv = f32(op, tensorName('v', [B, S, Hkv, D]), v, vOff, m.kvElems, false);
  f32(op, tensorName('out', [B, T, Hq, D]), out, outOff, m.qElems, false); // checked as the addon does; not read
  const lv = f32(op, tensorName('lse', [B, Hq, T]), lse, lseOff, m.lseElems, false);
  const gv = f32(op, tensorName('dout', [B, T, Hq, D]), dout, doutOff, m.qElems, false);
  const dqv = f32(op, tensorName('dq', [B, T, Hq, D]), dq, dqOff, m.qElems, true);
  const dkv = f32(op, tensorName('dk', [B, S, Hkv, D]), dk, dkOff, m.kvDense, true);
  const dvv = f32(op, tensorName('dv', [B, S, Hkv, D]), dv, dvOff, m.kvDense, true);
  const { qs, ks } = segments(op, m, qSeg, qSegOff, kSeg, kSegOff);
  dqv.fill(0);
  dkv.fill(0);
  dvv.fill(0);
  const sc = new Float64Array(S), p = new Float64Array(S), dp = new Float64Array(S);
  const group = Hq / Hkv;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < Hq; h++) {
        const kvh = Math.floor(h / group);
        const l = lv[(b * Hq + h) * T + t]!;
        if (l === -Infinity) continue; // saw no key: no gradient
        const q0 = ((b * T + t) * Hq + h) * D;
        scoreRow(m, qv, kv, qs, ks, b, t, h, sc);
        let pdp = 0;
        for (let s = 0; s < S; s++) {
          p[s] = sc[s] === -Infinity ? 0 : Math.exp(sc[s]! - l);
          const v0 = b * m.kvbs + (s * Hkv + kvh) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += gv[q0 + d]! * vv[v0 + d]!;
          dp[s] = dot;
          pdp += p[s]! * dot;
        }
        for (let s = 0; s < S; s++) {
          const ps = p[s]!;
          if (ps === 0) continue;
          const ds = ps * (dp[s]! - pdp) * m.scale;
          const k0 = b * m.kvbs + (s * Hkv + kvh) * D;
          const g0 = ((b * S + s) * Hkv + kvh) * D;
          for (let d = 0; d < D; d++) {
            dqv[q0 + d] = fr(dqv[q0 + d]! + fr(ds * kv[k0 + d]!));
            dkv[g0 + d] = fr(dkv[g0 + d]! + fr(ds * qv[q0 + d]!));
            dvv[g0 + d] = fr(dvv[g0 + d]! + fr(ps * gv[q0 + d]!));
          }
        }
      }
    }
  }
}
