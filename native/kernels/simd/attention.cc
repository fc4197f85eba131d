// Tiled causal attention with GQA, a query offset and segment ids, forward and backward (FlashAttention-2
// style): scores exist only as a (BQ, BK) tile; the forward keeps an online max / sum-exp per query row and
// saves lse; the backward recomputes the tiles from lse. Forward tasks are (batch, query head, query block);
// backward tasks are (batch, kv head), each owning its dk/dv rows and its query heads' dq rows, so no two
// threads write the same element and results do not depend on the thread count.
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/kernels.h"
#include "kernels/simd/nn_util.h"

namespace sft {
namespace SFT_NS {

using namespace simd;

namespace {

constexpr int64_t BK = 64;                      // keys per tile
constexpr int64_t BQ = 32;                      // queries per tile (backward)
constexpr int64_t BQF = 64;                     // queries per tile (forward: fewer K packs per query)
constexpr int NV = static_cast<int>(BK / W);    // vectors per tile row
// Query rows per score micro-step: 16 accumulators with AVX-512's 32 registers, ~8 with AVX2's 16.
constexpr int RB = W == 16 ? 16 / NV : (NV >= 8 ? 1 : 8 / NV);
// Rows of C per block_axpy step: RBLK rows of up to 4 vectors in registers, next to the 4 vectors of X.
constexpr int RBLK = W == 16 ? 4 : 2;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// dst[c * ds + r] = src[r * rs + c] for an 8x8 block, in registers (AVX, available in both ISA builds).
inline void transpose8x8(const float* src, int64_t rs, float* dst, int64_t ds) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + rs), r2 = _mm256_loadu_ps(src + 2 * rs),
         r3 = _mm256_loadu_ps(src + 3 * rs), r4 = _mm256_loadu_ps(src + 4 * rs), r5 = _mm256_loadu_ps(src + 5 * rs),
         r6 = _mm256_loadu_ps(src + 6 * rs), r7 = _mm256_loadu_ps(src + 7 * rs);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
         u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
         u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
         u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// kt (D, BK) = rows [0, n) of src (row stride rs, D floats each) transposed; columns n..BK are zero.
void pack_t(const float* src, int64_t rs, int64_t n, int64_t D, float* kt) {
  const int64_t n8 = n / 8 * 8, d8 = D / 8 * 8;
  for (int64_t j = 0; j < n8; j += 8)
    for (int64_t d = 0; d < d8; d += 8) transpose8x8(src + j * rs + d, rs, kt + d * BK + j, BK);
  for (int64_t d = 0; d < D; ++d) {
    float* row = kt + d * BK;
    if (d >= d8)
      for (int64_t j = 0; j < n8; ++j) row[j] = src[j * rs + d];
    for (int64_t j = n8; j < n; ++j) row[j] = src[j * rs + d];
    for (int64_t j = n; j < BK; ++j) row[j] = 0.f;
  }
}

template <int R>
void score_rows(const float* A, int64_t as, const float* kt, int64_t D, float* sc) {
  VF acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = zero();
  for (int64_t d = 0; d < D; ++d) {
    const float* kr = kt + d * BK;
    for (int r = 0; r < R; ++r) {
      const VF ad = set1(A[r * as + d]);
      for (int v = 0; v < NV; ++v) acc[r][v] = fmadd(ad, load(kr + v * W), acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) store(sc + r * BK + v * W, acc[r][v]);
}

// sc (nq, BK) = A (nq rows of D, row stride as) times kt (D, BK).
void tile_scores(const float* A, int64_t as, int64_t nq, const float* kt, int64_t D, float* sc) {
  int64_t i = 0;
  for (; i + RB <= nq; i += RB) score_rows<RB>(A + i * as, as, kt, D, sc + i * BK);
  for (; i < nq; ++i) score_rows<1>(A + i * as, as, kt, D, sc + i * BK);
}

// C[r * cs + c] += sum_{k < m} A[r * ar + k * ak] * X[k * xs + c] for r < R, c < (NVC - 1) * W + last:
// R rows of C held in registers while X's rows stream past, each X vector loaded once for R rows (a
// register-blocked product, where row-at-a-time axpys load X once per row). Each C vector is one FMA chain
// in k order, so a row's result does not depend on which rows share its block.
template <int R, int NVC>
inline void block_axpy_t(const float* A, int64_t ar, int64_t ak, int64_t m, const float* X, int64_t xs, float* C,
                         int64_t cs, int64_t last) {
  VF acc[R][NVC];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NVC; ++v)
      acc[r][v] = v == NVC - 1 && last < W ? load_partial(C + r * cs + v * W, last) : load(C + r * cs + v * W);
  for (int64_t k = 0; k < m; ++k) {
    const float* x = X + k * xs;
    VF xv[NVC];
    for (int v = 0; v < NVC; ++v) xv[v] = v == NVC - 1 && last < W ? load_partial(x + v * W, last) : load(x + v * W);
    for (int r = 0; r < R; ++r) {
      const VF a = set1(A[r * ar + k * ak]);
      for (int v = 0; v < NVC; ++v) acc[r][v] = fmadd(a, xv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NVC; ++v) {
      if (v == NVC - 1 && last < W) store_partial(C + r * cs + v * W, acc[r][v], last);
      else store(C + r * cs + v * W, acc[r][v]);
    }
}

template <int R>
void block_axpy_cols(const float* A, int64_t ar, int64_t ak, int64_t m, const float* X, int64_t xs, float* C, int64_t cs,
                     int64_t n) {
  for (int64_t c = 0; c < n; c += 4 * W) {
    const int64_t len = n - c < 4 * W ? n - c : 4 * W;
    const int64_t nv = (len + W - 1) / W, last = len - (nv - 1) * W;
    switch (nv) {
      case 4: block_axpy_t<R, 4>(A, ar, ak, m, X + c, xs, C + c, cs, last); break;
      case 3: block_axpy_t<R, 3>(A, ar, ak, m, X + c, xs, C + c, cs, last); break;
      case 2: block_axpy_t<R, 2>(A, ar, ak, m, X + c, xs, C + c, cs, last); break;
      default: block_axpy_t<R, 1>(A, ar, ak, m, X + c, xs, C + c, cs, last); break;
    }
  }
}

// rows rows of C (row stride cs, n floats each) += A (rows x m, strides ar, ak) times X (m rows of n, stride xs).
void rows_block_axpy(int64_t rows, const float* A, int64_t ar, int64_t ak, int64_t m, const float* X, int64_t xs, float* C,
                     int64_t cs, int64_t n) {
  int64_t r = 0;
  for (; r + RBLK <= rows; r += RBLK) block_axpy_cols<RBLK>(A + r * ar, ar, ak, m, X, xs, C + r * cs, cs, n);
  for (; r < rows; ++r) block_axpy_cols<1>(A + r * ar, ar, ak, m, X, xs, C + r * cs, cs, n);
}

// Number of leading keys of the tile [s0, s0 + n) that query t may see under the causal rule.
inline int64_t visible_keys(const AttentionArgs& a, int64_t t, int64_t s0, int64_t n) {
  if (!a.causal) return n;
  int64_t lim = t + a.q_offset - s0 + 1;
  return lim < 0 ? 0 : (lim > n ? n : lim);
}

// Number of leading keys of the tile [s0, s0 + n) that query t may NOT see under the sliding window (0 without one).
inline int64_t window_skip(const AttentionArgs& a, int64_t t, int64_t s0, int64_t n) {
  if (a.window <= 0) return 0;
  int64_t lo = t + a.q_offset - a.window + 1 - s0;
  return lo < 0 ? 0 : (lo > n ? n : lo);
}

// Scales a score row and sets invisible keys to -inf: j >= lim, and (with segments) other segments' keys.
inline void scale_mask_row(const AttentionArgs& a, float* row, int64_t lim, int64_t b, int64_t t, int64_t s0) {
  const VF vs = set1(a.scale);
  for (int v = 0; v < NV; ++v) store(row + v * W, mul(load(row + v * W), vs));
  for (int64_t j = lim; j < BK; ++j) row[j] = kNegInf;
  if (a.q_seg) {
    const int32_t qs = a.q_seg[b * a.T + t];
    const int32_t* ks = a.k_seg + b * a.S + s0;
    for (int64_t j = 0; j < lim; ++j)
      if (ks[j] != qs) row[j] = kNegInf;
  }
}

}  // namespace

void attention_fwd(const AttentionArgs& a) {
  const int64_t T = a.T, S = a.S, Hq = a.Hq, D = a.D, G = a.Hq / a.Hkv;
  if (a.B == 0 || T == 0 || Hq == 0) return;
  const int64_t nqb = (T + BQF - 1) / BQF;
  const int64_t tasks = a.B * Hq * nqb;
  const int64_t per = D * BK + BQF * BK + BQF * D + 2 * BQF;
  nnk::Scratch scratch(per * num_threads());
  const int64_t qs = Hq * D, kvs = a.Hkv * D;
  parallel_for(tasks, [&](int64_t j0, int64_t j1, int tid) {
    float* kt = scratch.get() + tid * per;
    float* sc = kt + D * BK;
    float* acc = sc + BQF * BK;
    float* m = acc + BQF * D;
    float* l = m + BQF;
    for (int64_t task = j0; task < j1; ++task) {
      const int64_t bh = task / nqb, qi = task % nqb;
      // Zig-zag over query blocks (0, n-1, 1, n-2, ...) so contiguous task ranges get similar causal work.
      const int64_t qb = qi % 2 == 0 ? qi / 2 : nqb - 1 - qi / 2;
      const int64_t b = bh / Hq, h = bh % Hq, kvh = h / G;
      const int64_t t0 = qb * BQF, nq = T - t0 < BQF ? T - t0 : BQF;
      const float* q = a.q + ((b * T + t0) * Hq + h) * D;
      const float* kb = a.k + b * a.kv_bstride + kvh * D;
      const float* vb = a.v + b * a.kv_bstride + kvh * D;
      for (int64_t i = 0; i < nq; ++i) {
        m[i] = kNegInf;
        l[i] = 0.f;
      }
      std::memset(acc, 0, sizeof(float) * nq * D);
      int64_t s_end = S;
      if (a.causal && t0 + nq + a.q_offset < s_end) s_end = t0 + nq + a.q_offset;
      int64_t s_begin = 0;  // with a sliding window, tiles wholly before the first query's window are skipped
      if (a.window > 0 && t0 + a.q_offset - a.window + 1 > 0) s_begin = (t0 + a.q_offset - a.window + 1) / BK * BK;
      for (int64_t s0 = s_begin; s0 < s_end; s0 += BK) {
        const int64_t n = s_end - s0 < BK ? s_end - s0 : BK;
        pack_t(kb + s0 * kvs, kvs, n, D, kt);
        tile_scores(q, qs, nq, kt, D, sc);
        for (int64_t i = 0; i < nq; ++i) {
          const int64_t t = t0 + i;
          const int64_t lim = visible_keys(a, t, s0, n);
          const int64_t skip = window_skip(a, t, s0, n);
          float* row = sc + i * BK;
          if (lim <= skip) {
            nnk::zero_row(row, BK);
            continue;
          }
          scale_mask_row(a, row, lim, b, t, s0);
          for (int64_t j = 0; j < skip; ++j) row[j] = kNegInf;
          VF mx = load(row);
          for (int v = 1; v < NV; ++v) mx = max(mx, load(row + v * W));
          const float rowmax = reduce_max(mx);
          if (rowmax == kNegInf) {  // every key of this tile is in another segment
            nnk::zero_row(row, BK);
            continue;
          }
          const float mnew = rowmax > m[i] ? rowmax : m[i];
          const float corr = std::exp(m[i] - mnew);
          const VF vm = set1(mnew);
          VF sum = zero();
          for (int v = 0; v < NV; ++v) {
            VF p = exp(sub(load(row + v * W), vm));
            store(row + v * W, p);
            sum = add(sum, p);
          }
          l[i] = l[i] * corr + reduce_add(sum);
          m[i] = mnew;
          if (corr != 1.f) nnk::scale_row(acc + i * D, D, corr);
        }
        // acc_i += sum_j p_ij v_j for the whole tile at once (invisible keys have p = 0).
        rows_block_axpy(nq, sc, BK, 1, n, vb + s0 * kvs, kvs, acc, D, D);
      }
      for (int64_t i = 0; i < nq; ++i) {
        const int64_t t = t0 + i;
        float* o = a.out + ((b * T + t) * Hq + h) * D;
        float* lse = a.lse + (b * Hq + h) * T + t;
        if (l[i] == 0.f) {
          nnk::zero_row(o, D);
          *lse = kNegInf;
          continue;
        }
        const VF inv = set1(1.f / l[i]);
        const float* ar = acc + i * D;
        for (int64_t d = 0; d < D; d += W) {
          const int64_t len = D - d < W ? D - d : W;
          store_partial(o + d, mul(load_partial(ar + d, len), inv), len);
        }
        *lse = m[i] + std::log(l[i]);
      }
    }
  });
}

void attention_bwd(const AttentionArgs& a) {
  const int64_t T = a.T, S = a.S, Hq = a.Hq, Hkv = a.Hkv, D = a.D, G = a.Hq / a.Hkv;
  const int64_t tasks = a.B * Hkv;
  const int64_t per = 2 * D * BK + 2 * BQ * BK + G * T;
  nnk::Scratch scratch(per * num_threads());
  const int64_t qs = Hq * D, kvs = Hkv * D;
  parallel_for(tasks, [&](int64_t j0, int64_t j1, int tid) {
    float* kt = scratch.get() + tid * per;
    float* vt = kt + D * BK;
    float* P = vt + D * BK;
    float* dS = P + BQ * BK;
    float* Di = dS + BQ * BK;  // (G, T): dout . out of each query row, once per task instead of per key tile
    for (int64_t task = j0; task < j1; ++task) {
      const int64_t b = task / Hkv, kvh = task % Hkv;
      for (int64_t g = 0; g < G; ++g)
        for (int64_t t = 0; t < T; ++t) {
          const int64_t row = ((b * T + t) * Hq + kvh * G + g) * D;
          Di[g * T + t] = nnk::dot(a.dout + row, a.out + row, D);
        }
      const float* kb = a.k + b * a.kv_bstride + kvh * D;
      const float* vb = a.v + b * a.kv_bstride + kvh * D;
      float* dkb = a.dk + (b * S * Hkv + kvh) * D;
      float* dvb = a.dv + (b * S * Hkv + kvh) * D;
      for (int64_t s = 0; s < S; ++s) {
        nnk::zero_row(dkb + s * kvs, D);
        nnk::zero_row(dvb + s * kvs, D);
      }
      for (int64_t t = 0; t < T; ++t) std::memset(a.dq + ((b * T + t) * Hq + kvh * G) * D, 0, sizeof(float) * G * D);
      for (int64_t s0 = 0; s0 < S; s0 += BK) {
        const int64_t n = S - s0 < BK ? S - s0 : BK;
        pack_t(kb + s0 * kvs, kvs, n, D, kt);
        pack_t(vb + s0 * kvs, kvs, n, D, vt);
        for (int64_t h = kvh * G; h < (kvh + 1) * G; ++h) {
          int64_t t_start = 0, t_end = T;
          if (a.causal && s0 - a.q_offset > 0) t_start = s0 - a.q_offset;
          // With a sliding window, queries t >= s0 + n - 1 - q_offset + window see no key of this tile.
          if (a.window > 0 && s0 + n - 1 - a.q_offset + a.window < t_end) t_end = s0 + n - 1 - a.q_offset + a.window;
          for (int64_t t0 = t_start; t0 < t_end; t0 += BQ) {
            const int64_t nq = t_end - t0 < BQ ? t_end - t0 : BQ;
            const int64_t row0 = (b * T + t0) * Hq + h;
            const float* q = a.q + row0 * D;
            const float* dout = a.dout + row0 * D;
            float* dq = a.dq + row0 * D;
            tile_scores(q, qs, nq, kt, D, P);
            tile_scores(dout, qs, nq, vt, D, dS);  // dP = dout . v
            for (int64_t i = 0; i < nq; ++i) {
              const int64_t t = t0 + i;
              const float lse = a.lse[(b * Hq + h) * T + t];
              const int64_t lim = visible_keys(a, t, s0, n);
              const int64_t skip = window_skip(a, t, s0, n);
              float* prow = P + i * BK;
              float* drow = dS + i * BK;
              if (lim <= skip || lse == kNegInf) {
                for (int v = 0; v < NV; ++v) {
                  store(prow + v * W, zero());
                  store(drow + v * W, zero());
                }
                continue;
              }
              scale_mask_row(a, prow, lim, b, t, s0);
              for (int64_t j = 0; j < skip; ++j) prow[j] = kNegInf;
              const VF vl = set1(lse), di = set1(Di[(h - kvh * G) * T + t]), vs = set1(a.scale);
              for (int v = 0; v < NV; ++v) {
                VF p = exp(sub(load(prow + v * W), vl));
                store(prow + v * W, p);
                store(drow + v * W, mul(mul(p, sub(load(drow + v * W), di)), vs));  // P (dP - Di) scale
              }
            }
            rows_block_axpy(n, P, 1, BK, nq, dout, qs, dvb + s0 * kvs, kvs, D);  // dv_j += sum_i P_ij dout_i
            rows_block_axpy(n, dS, 1, BK, nq, q, qs, dkb + s0 * kvs, kvs, D);    // dk_j += sum_i dS_ij q_i
            rows_block_axpy(nq, dS, BK, 1, n, kb + s0 * kvs, kvs, dq, qs, D);     // dq_i += sum_j dS_ij k_j
          }
        }
      }
    }
  });
}

}  // namespace SFT_NS
}  // namespace sft
