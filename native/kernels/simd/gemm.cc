// BLIS-style packed fp32 GEMM, compiled once per ISA: panels of op(A) and op(B) are packed into aligned
// scratch (transposes are absorbed by the packing), and an MR x NR register-blocked micro-kernel runs over
// them inside cache blocks (the loop nest and threading are in kernels/gemm_driver.h). Threads split C
// statically (never K), so every element of C is computed by the same sequence of operations whatever the
// thread count: results are bit-identical.
// bf16 compute (GemmArgs::bf16) rounds each value to bf16 while packing it and runs the same fp32
// micro-kernel: the products of bf16 values are exact in fp32, so this equals vdpbf16ps up to summation
// order and denormal flushing. On AVX-512 CPUs with AVX512_BF16, bf16 GEMMs go to kernels/bf16/ instead.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "kernels/gemm_driver.h"
#if SFT_ISA == 2
#include "kernels/avx512_util.h"
#endif
#include "kernels/kernels.h"
#include "kernels/simd/gemm_narrow.h"
#include "kernels/simd/simd.h"
#include "runtime.h"


namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;
using gemm_driver::Problem;

// Register tile MR x NR (NR = NV vectors) and cache blocks. Loop nest (our row-major terms):
//   rows of C in blocks of MB: the A block (MB x kc, packed once, shared by the threads) sits in L3;
//   columns of C in blocks of NB per thread: that thread's B block (kc x NB) sits in its L2;
//   one A micro-panel (MR x kc) stays in L1 while the micro-kernel streams the B micro-panels from L2.
// K is cut into equal blocks of at most KC (K = 768 runs as 2 x 384 rather than 512 + 256). Sizes for
// AVX-512 server cores (48 KiB L1d, 2 MiB L2): A micro-panel 14 x 512 floats = 28 KiB, B block 512 x 512
// floats = 1 MiB; for AVX2 (32 KiB L1d, >= 256 KiB L2): 6 x 256 = 6 KiB and 256 x 128 = 128 KiB.
#if SFT_ISA == 2
constexpr int MR = 14, NV = 2;          // 28 accumulators + 2 B vectors + 1 broadcast of 32 zmm
constexpr int64_t KC = 512, NB = 512;
#else
constexpr int MR = 6, NV = 2;           // 12 accumulators + 2 B vectors + 1 broadcast of 16 ymm
constexpr int64_t KC = 256, NB = 128;
#endif
constexpr int NR = NV * W;
constexpr int64_t MB = MR * 256;

// C tile (mv x nv, at c with row stride ldc) = alpha * a_panel (MR x kc) * b_panel (kc x NR) + beta * C.
// beta == 0 writes without reading C. kFull: the tile is a whole MR x NR (no bounds on the stores).
template <bool kFull>
inline void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                         float alpha, float beta, int mv, int nv) {
  VF acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = zero();

  // C's rows are ldc apart (no hardware prefetcher follows them): fetch the tile while the k loop runs.
  for (int r = 0; r < MR; ++r) {
    if (!kFull && r >= mv) break;
    for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + v * W), _MM_HINT_T0);
  }

  for (int64_t k = 0; k < kc; ++k) {
    VF bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load(b + v * W);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      VF ar = set1(a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = fmadd(ar, bv[v], acc[r][v]);
    }
    a += MR;
    b += NR;
  }

  const VF va = set1(alpha), vb = set1(beta);
  const bool read_c = beta != 0.f;
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    if (!kFull && r >= mv) break;
    float* cr = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      VF x = mul(acc[r][v], va);
      int64_t left = kFull ? W : nv - v * W;
      if (left >= W) {
        if (read_c) x = fmadd(vb, load(cr + v * W), x);
        store(cr + v * W, x);
      } else if (left > 0) {
        if (read_c) x = fmadd(vb, load_partial(cr + v * W, left), x);
        store_partial(cr + v * W, x, left);
      }
    }
  }
}

// Packing writes micro-panels of R values per k: panel q holds element (k, r) at q*R*kc + k*R + r, and lanes
// past the matrix edge are zero, so the micro-kernel always runs whole tiles.

// In-register transpose of a W x W block: on return r[k] holds what was column k (lane i = old row i).
inline void transpose(VF* r) {
#if SFT_ISA == 2
  __m512 t[16];
  for (int i = 0; i < 16; ++i) t[i] = r[i].v;
  avx512_util::transpose16(t);
  for (int i = 0; i < 16; ++i) r[i].v = t[i];
#else
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[j + 4].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
#endif
}

// Each lane rounded to the nearest bf16 (ties to even), kept in fp32 format; NaN stays a quiet NaN.
// Bit-exact with round_bf16() in kernels.h.
inline VF to_bf16(VF x) {
#if SFT_ISA == 2
  return {_mm512_castsi512_ps(avx512_util::round_bf16(x.v))};
#else
  const __m256i u = _mm256_castps_si256(x.v), hi = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), hi);
  const __m256i q = _mm256_and_si256(_mm256_or_si256(u, _mm256_set1_epi32(0x400000)), hi);
  return {_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(q), _mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q))};
#endif
}

// Source panels stored along k (one line per r, lines ld apart): dst[k*R + r] = src[r*ld + k], r < rv.
// Reads W values of each of up to W lines (whole cache lines, whatever ld aliases to) and transposes them
// in registers.
template <int R, bool kRound>
void pack_lines(const float* src, int64_t ld, int rv, int64_t kc, float* dst) {
  for (int64_t kb = 0; kb < kc; kb += W) {
    const int kn = static_cast<int>(std::min<int64_t>(W, kc - kb));
#pragma GCC unroll 4
    for (int rb = 0; rb < R; rb += W) {
      const int lanes = std::min(W, R - rb);   // lanes of dst per k from this block
      VF x[W];
#pragma GCC unroll 16
      for (int i = 0; i < W; ++i) {
        const int r = rb + i;
        const float* s = src + r * ld + kb;
        x[i] = r >= rv || r >= R ? zero() : kn == W ? load(s) : load_partial(s, kn);
        if (kRound) x[i] = to_bf16(x[i]);
      }
      transpose(x);
      float* d = dst + kb * R + rb;
      if (lanes == W && kn == W) {
#pragma GCC unroll 16
        for (int k = 0; k < W; ++k) store(d + k * R, x[k]);
      } else {
        for (int k = 0; k < kn; ++k) {
          if (lanes == W) store(d + k * R, x[k]);
          else store_partial(d + k * R, x[k], lanes);
        }
      }
    }
  }
}

// Source rows stored along the panel width (row k at src + k*ld, `width` valid values): panels
// [0, panels) of R columns each, dst[q*R*kc + k*R + r] = src[k*ld + q*R + r]. Reads each row in order.
template <int R, bool kRound>
void pack_rows(const float* src, int64_t ld, int64_t width, int64_t kc, int64_t panels, float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    const float* row = src + k * ld;
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t cols = std::min<int64_t>(R, width - q * R);
      const float* s = row + q * R;
      float* d = dst + q * R * kc + k * R;
#pragma GCC unroll 4
      for (int o = 0; o < R; o += W) {
        const int n = std::min(W, R - o);
        const int64_t valid = std::min<int64_t>(cols - o, n);
        VF x = valid >= W ? load(s + o) : valid > 0 ? load_partial(s + o, valid) : zero();
        if (kRound) x = to_bf16(x);
        if (n == W) store(d + o, x);
        else store_partial(d + o, x, n);
      }
    }
  }
}

// Packs micro-panels [pan0, pan1) of rows [i0, i0 + mb) x k [k0, k0 + kc) of op(A) (MR rows each).
template <bool kRound>
void pack_a(const Problem& p, int64_t i0, int64_t mb, int64_t k0, int64_t kc, int64_t pan0, int64_t pan1, float* dst) {
  if (p.trans_a) {
    // stored (K, M): row k holds the panels' rows contiguously
    pack_rows<MR, kRound>(p.A + k0 * p.lda + i0 + pan0 * MR, p.lda, mb - pan0 * MR, kc, pan1 - pan0, dst + pan0 * MR * kc);
  } else {
    // stored (M, K): each panel is a transpose of MR rows
    for (int64_t q = pan0; q < pan1; ++q) {
      const int rv = static_cast<int>(std::min<int64_t>(MR, mb - q * MR));
      pack_lines<MR, kRound>(p.A + (i0 + q * MR) * p.lda + k0, p.lda, rv, kc, dst + q * MR * kc);
    }
  }
}

// Packs k [k0, k0 + kc) x columns [j0, j0 + nb) of op(B) into NR-column micro-panels.
template <bool kRound>
void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t j0, int64_t nb, float* dst) {
  const int64_t panels = (nb + NR - 1) / NR;
  if (!p.trans_b) {
    // stored (K, N): row k holds the block's columns contiguously
    pack_rows<NR, kRound>(p.B + k0 * p.ldb + j0, p.ldb, nb, kc, panels, dst);
  } else {
    // stored (N, K): each panel is a transpose of NR rows
    for (int64_t q = 0; q < panels; ++q) {
      const int rv = static_cast<int>(std::min<int64_t>(NR, nb - q * NR));
      pack_lines<NR, kRound>(p.B + (j0 + q * NR) * p.ldb + k0, p.ldb, rv, kc, dst + q * NR * kc);
    }
  }
}

// Runs the micro-kernel for A micro-panels [pa0, pa1) (of a block mb rows tall) against every micro-panel
// of a packed B block nb wide; c points at C's element (row 0 of the A block, column 0 of the B block).
// The A micro-panel stays in L1 while the B micro-panels stream from L2.
void macro_kernel(int64_t mb, int64_t nb, int64_t kc, int64_t pa0, int64_t pa1, const float* ap, const float* bp,
                  float* c, int64_t ldc, float alpha, float beta) {
  const int64_t b_panels = (nb + NR - 1) / NR;
  for (int64_t ir = pa0; ir < pa1; ++ir) {
    const int mv = static_cast<int>(std::min<int64_t>(MR, mb - ir * MR));
    const float* a = ap + ir * MR * kc;
    for (int64_t q = 0; q < b_panels; ++q) {
      const int nv = static_cast<int>(std::min<int64_t>(NR, nb - q * NR));
      float* ct = c + ir * MR * ldc + q * NR;
      if (mv == MR && nv == NR) micro_kernel<true>(kc, a, bp + q * NR * kc, ct, ldc, alpha, beta, MR, NR);
      else micro_kernel<false>(kc, a, bp + q * NR * kc, ct, ldc, alpha, beta, mv, nv);
    }
  }
}

// The fp32 policy of the shared driver; bf16 compute only changes the packing (values rounded on the way).
struct F32Policy {
  using Packed = float;
  static constexpr int MR = sft::SFT_NS::MR, NR = sft::SFT_NS::NR;
  static constexpr int64_t KC = sft::SFT_NS::KC, NB = sft::SFT_NS::NB, MB = sft::SFT_NS::MB;
  static int64_t depth(int64_t kc) { return kc; }
  static void pack_a(const Problem& p, int64_t i0, int64_t mb, int64_t k0, int64_t kc, int64_t pan0, int64_t pan1, float* dst) {
    if (p.bf16) sft::SFT_NS::pack_a<true>(p, i0, mb, k0, kc, pan0, pan1, dst);
    else sft::SFT_NS::pack_a<false>(p, i0, mb, k0, kc, pan0, pan1, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t j0, int64_t nb, float* dst) {
    if (p.bf16) sft::SFT_NS::pack_b<true>(p, k0, kc, j0, nb, dst);
    else sft::SFT_NS::pack_b<false>(p, k0, kc, j0, nb, dst);
  }
  static void macro_kernel(int64_t mb, int64_t nb, int64_t kc, int64_t pa0, int64_t pa1, const float* ap, const float* bp,
                           float* c, int64_t ldc, float alpha, float beta) {
    sft::SFT_NS::macro_kernel(mb, nb, kc, pa0, pa1, ap, bp, c, ldc, alpha, beta);
  }
};

// ---- Small-row path: few rows of C (KV-cache decoding, x @ Wᵀ with x one to a few tokens) ----
// With a handful of rows every element of op(B) is used only M times, so the GEMM is bound by streaming B
// and packing it (one more read and a write of all of B per call) would triple the traffic. Here op(B) is
// read in place: op(B) = Bᵀ (B stored (N, K), the HF linear layout) is dot products of A's rows with B's
// contiguous rows, vectorised along K with one horizontal sum at the end; op(B) = B (stored (K, N)) streams
// B's rows against broadcast A values. Only op(A) (M x K, tiny) is copied, when it is transposed or must be
// rounded to bf16; B is rounded as it is loaded. Threads split the columns of C, so each element of C is
// one fixed sequence of operations (its K loop, then its horizontal sum) whatever the thread count.

// Rows of C up to which the small-row path runs, measured against the packed path at 768 x 2048 on
// AVX-512 (bench:gemm --decode): with op(B) = Bᵀ it still wins at 32 rows (1.3 vs 1.9 ms) and is even at 64;
// with op(B) = B the broadcast kernel loses at 32 rows (2.5 vs 1.9 ms).
constexpr int64_t kSmallRowsNt = 32;
constexpr int64_t kSmallRowsNn = 16;
// Rows of A per register tile; the tile's rows of B (NT) or vectors of columns (NN) follow.
constexpr int kSmallR = 4;
#if SFT_ISA == 2
constexpr int kNtWide = 8, kNtNarrow = 4;   // B rows per NT tile for <= 2 and for 3-4 rows of A
constexpr int kNnV = 4;                     // vectors of columns per NN tile (64 columns)
#else
constexpr int kNtWide = 4, kNtNarrow = 2;
constexpr int kNnV = 2;
#endif
// Below this many bytes of B a small-row GEMM stays on one thread: waking the pool costs tens of
// microseconds, about what streaming 1-2 MiB from L2/L3 takes on one core (a 512 x 512 weight ran as fast
// or faster on one thread; 768 x 32000 ran 1.6x faster on two).
constexpr double kSmallThreadMinBytes = 2 << 20;
// ... unless there is enough arithmetic to pay for the wake-up: a batched decode step (16 rows against a
// 512 x 512 weight, 4M multiply-adds) is compute-bound on one core.
constexpr double kSmallThreadMinMacs = 4 << 20;

// c = alpha * s + beta * c, beta == 0 without reading c; the same rounding as the packed kernel's store.
inline void small_store(float* c, float s, float alpha, float beta) {
  const float x = alpha * s;
  *c = beta == 0.f ? x : std::fma(beta, *c, x);
}

// C tile (R x CB) of A (R rows, lda apart, K long) times the CB rows of B (ldb apart): C[r][j] = A_r . B_j.
template <int R, int CB, bool kRound>
void nt_tile(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t K, float* c, int64_t ldc, float alpha,
             float beta) {
  VF acc[R][CB];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < CB; ++j) acc[r][j] = zero();
  auto step = [&](int64_t k, int64_t n) {
    VF bv[CB];
#pragma GCC unroll 8
    for (int j = 0; j < CB; ++j) {
      bv[j] = n == W ? load(b + j * ldb + k) : load_partial(b + j * ldb + k, n);
      if (kRound) bv[j] = to_bf16(bv[j]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const VF av = n == W ? load(a + r * lda + k) : load_partial(a + r * lda + k, n);
#pragma GCC unroll 8
      for (int j = 0; j < CB; ++j) acc[r][j] = fmadd(av, bv[j], acc[r][j]);
    }
  };
  int64_t k = 0;
  for (; k + W <= K; k += W) step(k, W);
  if (k < K) step(k, K - k);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < CB; ++j) small_store(c + r * ldc + j, reduce_add(acc[r][j]), alpha, beta);
}

// C tile (R x up to kNnV*W columns, nv valid) of A (R rows, lda apart) times B's K rows (ldb apart) at those
// columns: each lane is its column's sum over k in order.
template <int R, bool kFull, bool kRound>
void nn_tile(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t K, float* c, int64_t ldc, float alpha,
             float beta, int nv) {
  VF acc[R][kNnV];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNnV; ++v) acc[r][v] = zero();
  for (int64_t k = 0; k < K; ++k) {
    const float* bk = b + k * ldb;
    VF bv[kNnV];
#pragma GCC unroll 4
    for (int v = 0; v < kNnV; ++v) {
      const int left = kFull ? W : nv - v * W;
      bv[v] = left >= W ? load(bk + v * W) : left > 0 ? load_partial(bk + v * W, left) : zero();
      if (kRound) bv[v] = to_bf16(bv[v]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const VF ar = set1(a[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < kNnV; ++v) acc[r][v] = fmadd(ar, bv[v], acc[r][v]);
    }
  }
  const VF va = set1(alpha), vb = set1(beta);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kNnV; ++v) {
      const int left = kFull ? W : nv - v * W;
      VF x = mul(acc[r][v], va);
      if (left >= W) {
        if (beta != 0.f) x = fmadd(vb, load(cr + v * W), x);
        store(cr + v * W, x);
      } else if (left > 0) {
        if (beta != 0.f) x = fmadd(vb, load_partial(cr + v * W, left), x);
        store_partial(cr + v * W, x, left);
      }
    }
  }
}

// The CB columns from j of C (every row group of A) on the NT path.
template <int CB, bool kRound>
void nt_columns(const Problem& p, const float* a, int64_t lda, int64_t j) {
  for (int64_t i0 = 0; i0 < p.M; i0 += kSmallR) {
    const float* ai = a + i0 * lda;
    const float* bj = p.B + j * p.ldb;
    float* c = p.C + i0 * p.ldc + j;
    switch (std::min<int64_t>(kSmallR, p.M - i0)) {
      case 1: nt_tile<1, CB, kRound>(ai, lda, bj, p.ldb, p.K, c, p.ldc, p.alpha, p.beta); break;
      case 2: nt_tile<2, CB, kRound>(ai, lda, bj, p.ldb, p.K, c, p.ldc, p.alpha, p.beta); break;
      case 3: nt_tile<3, CB, kRound>(ai, lda, bj, p.ldb, p.K, c, p.ldc, p.alpha, p.beta); break;
      default: nt_tile<4, CB, kRound>(ai, lda, bj, p.ldb, p.K, c, p.ldc, p.alpha, p.beta); break;
    }
  }
}

// One small-row GEMM over columns [j0, j1) of C. a: op(A) as M rows lda apart (already rounded with bf16).
// Column tiles outside, row groups inside, so a tile's B stays in L1 (NT) or L2 (NN) while every row uses it.
template <bool kRound>
void small_columns(const Problem& p, const float* a, int64_t lda, int64_t j0, int64_t j1) {
  const int64_t M = p.M, K = p.K;
  if (p.trans_b) {
    int64_t j = j0;
    if (M <= 2)
      for (; j + kNtWide <= j1; j += kNtWide) nt_columns<kNtWide, kRound>(p, a, lda, j);
    for (; j + kNtNarrow <= j1; j += kNtNarrow) nt_columns<kNtNarrow, kRound>(p, a, lda, j);
    for (; j < j1; ++j) nt_columns<1, kRound>(p, a, lda, j);
  } else {
    constexpr int64_t TW = kNnV * W;
    for (int64_t j = j0; j < j1; j += TW) {
      const int nv = static_cast<int>(std::min<int64_t>(TW, j1 - j));
      for (int64_t i0 = 0; i0 < M; i0 += kSmallR) {
        const float* ai = a + i0 * lda;
        const float* bj = p.B + j;
        float* c = p.C + i0 * p.ldc + j;
        const int r = static_cast<int>(std::min<int64_t>(kSmallR, M - i0));
        if (nv == TW) {
          switch (r) {
            case 1: nn_tile<1, true, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
            case 2: nn_tile<2, true, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
            case 3: nn_tile<3, true, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
            default: nn_tile<4, true, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
          }
        } else {
          switch (r) {
            case 1: nn_tile<1, false, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
            case 2: nn_tile<2, false, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
            case 3: nn_tile<3, false, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
            default: nn_tile<4, false, kRound>(ai, lda, bj, p.ldb, K, c, p.ldc, p.alpha, p.beta, nv); break;
          }
        }
      }
    }
  }
}

// op(A) of one problem as M contiguous rows of K, rounded to bf16 when asked: dst[i*K + k] = op(A)[i][k].
void small_pack_a(const Problem& p, float* dst) {
  for (int64_t i = 0; i < p.M; ++i) {
    float* d = dst + i * p.K;
    if (p.trans_a)
      for (int64_t k = 0; k < p.K; ++k) d[k] = p.A[k * p.lda + i];
    else
      std::memcpy(d, p.A + i * p.lda, sizeof(float) * p.K);
    if (p.bf16)
      for (int64_t k = 0; k < p.K; ++k) d[k] = round_bf16(d[k]);
  }
}

// The whole batched GEMM on the small-row path (M <= kSmallRowsNt / kSmallRowsNn, K > 0, alpha != 0). Threads take equal
// runs of (batch, column unit) pairs; a unit is a whole number of register tiles.
void small_gemm(const GemmArgs& g) {
  const bool copy_a = g.trans_a || g.bf16;
  const int64_t a_sets = g.stride_a == 0 ? 1 : g.batch;
  std::optional<gemm_driver::Scratch> scratch;   // only when A is copied: decode calls skip the pool's lock
  if (copy_a) scratch.emplace(sizeof(float) * static_cast<size_t>(a_sets * g.M * g.K));
  float* a_buf = copy_a ? static_cast<float*>(scratch->ptr) : nullptr;
  auto problem = [&](int64_t b) {
    return Problem{g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.A + b * g.stride_a, g.lda,
                   g.B + b * g.stride_b, g.ldb, g.beta, g.C + b * g.stride_c, g.ldc, g.bf16};
  };
  if (copy_a)
    for (int64_t b = 0; b < a_sets; ++b) small_pack_a(problem(b), a_buf + b * g.M * g.K);

  const int64_t unit = g.trans_b ? kNtWide : kNnV * W;
  const int64_t units = gemm_driver::ceil_div(g.N, unit), total = g.batch * units;
  auto run_units = [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1;) {
      const int64_t b = u / units, q0 = u % units, q1 = std::min(units, q0 + (u1 - u));
      const Problem p = problem(b);
      const float* a = copy_a ? a_buf + (g.stride_a == 0 ? 0 : b) * g.M * g.K : p.A;
      const int64_t lda = copy_a ? g.K : g.lda;
      if (g.bf16) small_columns<true>(p, a, lda, q0 * unit, std::min(g.N, q1 * unit));
      else small_columns<false>(p, a, lda, q0 * unit, std::min(g.N, q1 * unit));
      u += q1 - q0;
    }
  };
  const int threads = num_threads();
  const double bytes = 4.0 * static_cast<double>(g.batch) * static_cast<double>(g.N) * static_cast<double>(g.K);
  const double macs = static_cast<double>(g.batch) * static_cast<double>(g.M) * static_cast<double>(g.N) * static_cast<double>(g.K);
  if (threads > 1 && total > 1 && (bytes >= kSmallThreadMinBytes || macs >= kSmallThreadMinMacs)) {
    parallel_for(threads, [&](int64_t t, int64_t, int) {
      auto [u0, u1] = gemm_driver::share(total, static_cast<int>(t), threads);
      run_units(u0, u1);
    });
  } else {
    run_units(0, total);
  }
}

}  // namespace

void gemm(const GemmArgs& g) {
  // A LoRA adapter's GEMMs (C a few columns wide, or a few rows tall from a transposed op(A)): gemm_narrow.cc.
  if (narrow_gemm(g)) return;
  if (g.batch > 0 && g.M > 0 && g.N > 0 && g.M <= (g.trans_b ? kSmallRowsNt : kSmallRowsNn) && g.K > 0 && g.alpha != 0.f)
    return small_gemm(g);
#if SFT_ISA == 2
  if (g.bf16) {
    const int path = bf16_path();
    if (path == kBf16Amx || path == kBf16AmxEmulated) return amx::gemm(g, path == kBf16AmxEmulated);
    if (path != kBf16Fallback) return avx512bf16::gemm(g, path == kBf16Emulated);
  }
#endif
  gemm_driver::run<F32Policy>(g);
}

}  // namespace SFT_NS
}  // namespace sft
