// Narrow fp32 GEMMs: C (M x N) at most kMaxV vectors wide with M and K long, and the transposed case (C at most
// kMaxV vectors tall, op(A) stored (K, M)). These are a rank-r LoRA adapter's GEMMs: x·Aᵀ and g·B (N = r), B's
// gradient gᵀ·(x·Aᵀ) (N = r, op(A) transposed) and A's gradient (g·B)ᵀ·x (M = r, run as its transpose). The packed
// path (gemm.cc) pads such a C to whole register tiles and packs all of op(A) for a few columns of work: it ran
// them at 30-40% of its own speed on one core. Here only the narrow operand (K x n, at most a few hundred KiB) is
// packed, zero padded to whole vectors; the long operand is read in place, by register tiles along its rows or,
// when it is stored (K, rows), by outer products vectorised along its rows (docs/LORA.md has the measurements).
// Every element of C is one sum over k in order (the outer-product path only stores and reloads the fp32
// accumulators between blocks of k), so the result does not depend on the thread count, on the tile an element
// falls in, or on the other rows of the call.
#include "kernels/simd/gemm_narrow.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm_driver.h"
#include "runtime.h"

namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;
using gemm_driver::ceil_div;

// C at most kMaxV vectors wide (64 columns with AVX-512, 32 with AVX2), and at least kMinLong rows and deep.
constexpr int kMaxV = 4;
constexpr int64_t kMinLong = 64;

// ---- The long operand stored (rows, K): register tiles ----
// Rows of C per register tile for NV vectors: R*NV accumulators, NV vectors of B and a broadcast fit the
// register file (32 zmm, 16 ymm). Each row read along k needs its own pointer: beyond 8 of them the compiler
// parks pointers in vector registers and moves them back inside the k loop.
#if SFT_ISA == 2
constexpr int rows_for(int nv) { return nv == 1 ? 8 : 6; }
#else
constexpr int rows_for(int nv) { return nv == 1 ? 8 : nv == 2 ? 5 : nv == 3 ? 3 : 2; }
#endif

// acc (R rows, NV*W floats apart) = rows [i0, i0 + R) of a (lda apart, along k) times bp's K rows.
// The operand comes cold from memory (a layer's saved input, an incoming gradient) in rows of a few KiB, short
// streams the hardware prefetcher ramps up on too late: each tile fetches the next tile's rows, a line per
// row every 16 k, a whole tile's time ahead.
template <int NV, int R>
void tile(const float* a, int64_t lda, int64_t i0, int64_t K, const float* bp, float* acc) {
  constexpr int64_t np = NV * W;
  VF c[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = zero();
  for (int64_t k = 0; k < K; ++k) {
    if ((k & 15) == 0) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(a + (i0 + R + r) * lda + k), _MM_HINT_T0);
    }
    VF b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = load(bp + k * np + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const VF x = set1(a[(i0 + r) * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = fmadd(x, b[v], c[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(acc + r * np + v * W, c[r][v]);
}

template <int NV>
void tile_rows(const float* a, int64_t lda, int64_t i0, int64_t i1, int64_t K, const float* bp, float* acc) {
  constexpr int R = rows_for(NV);
  constexpr int64_t np = NV * W;
  int64_t i = i0;
  for (; i + R <= i1; i += R) tile<NV, R>(a, lda, i, K, bp, acc + i * np);
  for (; i < i1; ++i) tile<NV, 1>(a, lda, i, K, bp, acc + i * np);
}

// ---- The long operand stored (K, rows): outer products along its rows ----
// A weight gradient's g or x (K the tokens): its row k is contiguous across the rows i of the result, so the
// result is vectorised along i: a strip of IV vectors of i against J of the narrow operand's columns, J*IV
// accumulators in registers. Each k loads IV vectors of the long operand and broadcasts J packed values (IV + J
// loads for J*IV FMAs). k runs in blocks of rows whose part in the thread's range is about kBlockBytes (held in
// L1/L2 while every strip and column block of the range goes over them); a strip's accumulators are stored and
// reloaded between blocks (still one sum over k in order), and its first column block fetches its lines of the
// next block. Measured (one core, operands cold): 64 KiB blocks beat 32 / 96 / 128 / 192 at 512- and 1376-wide
// rows; without the prefetch the strided lines arrive 1.3-1.8x slower.
#if SFT_ISA == 2
constexpr int kOuterJ = 8, kOuterIV = 3;
#else
constexpr int kOuterJ = 4, kOuterIV = 3;
#endif
constexpr int64_t kBlockBytes = 64 << 10;

// out (J rows of IV*W floats) += (or = when first) sum over k in [k0, k1) of bp[k][j0 + j] * a[k][i0 .. i0 + IV*W);
// columns past `live` (the rows' end) read as zero. With `fetch`, the same lines of rows k + kb are prefetched.
template <int IV>
void outer_strip(const float* a, int64_t lda, int64_t i0, int64_t live, int64_t k0, int64_t k1, int64_t K,
                 const float* bp, int64_t np, int64_t j0, float* out, bool first, bool fetch, int64_t kb) {
  constexpr int J = kOuterJ;
  VF c[J][IV];
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j)
#pragma GCC unroll 3
    for (int v = 0; v < IV; ++v) c[j][v] = first ? zero() : load(out + j * IV * W + v * W);
  const bool whole = live >= IV * W;
  const float* ai = a + k0 * lda + i0;
  const float* bk = bp + k0 * np + j0;
  const int64_t ahead = fetch ? std::min(k1, K - kb) : k0;
  for (int64_t k = k0; k < k1; ++k, ai += lda, bk += np) {
    if (k < ahead) {
#pragma GCC unroll 3
      for (int v = 0; v < IV; ++v) _mm_prefetch(reinterpret_cast<const char*>(ai + kb * lda + v * W), _MM_HINT_T0);
    }
    VF x[IV];
    if (whole) {
#pragma GCC unroll 3
      for (int v = 0; v < IV; ++v) x[v] = load(ai + v * W);
    } else {
      for (int v = 0; v < IV; ++v) x[v] = live > v * W ? load_partial(ai + v * W, live - v * W) : zero();
    }
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const VF b = set1(bk[j]);
#pragma GCC unroll 3
      for (int v = 0; v < IV; ++v) c[j][v] = fmadd(b, x[v], c[j][v]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j)
#pragma GCC unroll 3
    for (int v = 0; v < IV; ++v) store(out + j * IV * W + v * W, c[j][v]);
}

// Rows [i0, i1) of acc (rows of np floats) by outer products: strips of kOuterIV vectors of rows, each against
// the packed columns in blocks of kOuterJ (blocks wholly past the n live columns are skipped: their acc columns
// are never read). tiles: scratch of (i1 - i0 rounded up to strips) * np floats.
void outer_rows(const float* a, int64_t lda, int64_t i0, int64_t i1, int64_t K, const float* bp, int64_t np, int64_t n,
                float* acc, float* tiles) {
  constexpr int J = kOuterJ, IV = kOuterIV;
  constexpr int64_t S = IV * W;
  const int64_t jb = (n + J - 1) / J;
  const int64_t kb = std::clamp<int64_t>(kBlockBytes / (static_cast<int64_t>(sizeof(float)) * (i1 - i0)) / 8 * 8, 8, 256);
  for (int64_t k0 = 0; k0 < K; k0 += kb) {
    const int64_t k1 = std::min(K, k0 + kb);
    for (int64_t i = i0, t = 0; i < i1; i += S, ++t) {
      const int64_t live = std::min(S, i1 - i);
      for (int64_t b = 0; b < jb; ++b)
        outer_strip<IV>(a, lda, i, live, k0, k1, K, bp, np, b * J, tiles + (t * jb + b) * J * S, k0 == 0, b == 0, kb);
    }
  }
  for (int64_t i = i0, t = 0; i < i1; i += S, ++t) {
    const int64_t live = std::min(S, i1 - i);
    for (int64_t b = 0; b < jb; ++b) {
      const float* tile = tiles + (t * jb + b) * J * S;
      for (int64_t r = 0; r < live; ++r)
        for (int j = 0; j < J; ++j) acc[(i + r) * np + b * J + j] = tile[j * S + r];
    }
  }
}

void accumulate(int nv, bool along_cols, const float* a, int64_t lda, int64_t i0, int64_t i1, int64_t K, const float* bp,
                int64_t n, float* acc, float* tiles) {
  if (along_cols) return outer_rows(a, lda, i0, i1, K, bp, nv * W, n, acc, tiles + i0 * nv * W);
  switch (nv) {
    case 1: return tile_rows<1>(a, lda, i0, i1, K, bp, acc);
    case 2: return tile_rows<2>(a, lda, i0, i1, K, bp, acc);
    case 3: return tile_rows<3>(a, lda, i0, i1, K, bp, acc);
    default: return tile_rows<4>(a, lda, i0, i1, K, bp, acc);
  }
}

// bp (K rows of np floats) = the narrow operand, n columns then zeros. Its element (k, j) is b[j*ldb + k] when
// along_k (stored (n, K), a LoRA A), else b[k*ldb + j].
void pack_narrow(const float* b, int64_t ldb, bool along_k, int64_t K, int64_t n, int64_t np, float* bp) {
  if (along_k) {
    for (int64_t k = 0; k < K; ++k) {
      float* row = bp + k * np;
      for (int64_t j = 0; j < n; ++j) row[j] = b[j * ldb + k];
      for (int64_t j = n; j < np; ++j) row[j] = 0.f;
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      std::memcpy(bp + k * np, b + k * ldb, sizeof(float) * static_cast<size_t>(n));
      std::memset(bp + k * np + n, 0, sizeof(float) * static_cast<size_t>(np - n));
    }
  }
}

// Rows [i0, i1) of the result into C: C = alpha*acc + beta*C (beta == 0 writes without reading C), the same
// rounding as the other paths' stores. transposed: result row i is C's column i.
void write_c(const float* acc, int64_t np, int64_t i0, int64_t i1, int64_t n, float alpha, float beta, float* C,
             int64_t ldc, bool transposed) {
  if (transposed) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float* c = C + j * ldc + i;
        const float x = alpha * acc[i * np + j];
        *c = beta == 0.f ? x : std::fma(beta, *c, x);
      }
    return;
  }
  const VF va = set1(alpha), vb = set1(beta);
  for (int64_t i = i0; i < i1; ++i) {
    float* c = C + i * ldc;
    for (int64_t j = 0; j < n; j += W) {
      VF x = mul(load(acc + i * np + j), va);
      if (j + W <= n) {
        if (beta != 0.f) x = fmadd(vb, load(c + j), x);
        store(c + j, x);
      } else {
        if (beta != 0.f) x = fmadd(vb, load_partial(c + j, n - j), x);
        store_partial(c + j, x, n - j);
      }
    }
  }
}

}  // namespace

bool narrow_gemm(const GemmArgs& g) {
  if (g.bf16 || g.alpha == 0.f || g.batch <= 0 || g.K < kMinLong) return false;
  constexpr int64_t widest = kMaxV * W;
  // Narrow C: rows of op(A) in place, op(B) packed. Short C: its transpose Cᵀ = op(B)ᵀ·op(A)ᵀ, rows of op(B)ᵀ
  // in place and op(A)ᵀ packed; only when op(A) is stored (K, M) (a weight gradient, K the tokens), where
  // op(A)ᵀ packs by rows. A few rows against a weight (decoding) stay on the small-row path.
  bool transposed;
  if (g.N <= widest && g.M >= kMinLong) transposed = false;
  else if (g.M <= widest && g.N >= kMinLong && g.trans_a) transposed = true;
  else return false;

  const int64_t rows = transposed ? g.N : g.M, n = transposed ? g.M : g.N, K = g.K;
  const int nv = static_cast<int>(ceil_div(n, W));
  const int64_t np = nv * W;
  // The long operand's rows are along k unless it is stored (K, rows).
  const bool along_cols = transposed ? !g.trans_b : g.trans_a;
  const int64_t lda = transposed ? g.ldb : g.lda;
  const int64_t ldn = transposed ? g.lda : g.ldb;
  const bool narrow_along_k = transposed ? !g.trans_a : g.trans_b;

  // bp, acc and (outer products) the strips' tiles, rows rounded up to whole strips.
  const int64_t tile_rows_total = along_cols ? ceil_div(rows, kOuterIV * W) * kOuterIV * W : 0;
  gemm_driver::Scratch scratch(sizeof(float) * static_cast<size_t>((K + rows + tile_rows_total) * np));
  float* bp = static_cast<float*>(scratch.ptr);
  float* acc = bp + K * np;
  float* tiles = acc + rows * np;
  // Threads split the rows of C (of Cᵀ when transposed) in whole register tiles.
  const int64_t R = along_cols ? kOuterIV * W : rows_for(nv);
  const int64_t units = ceil_div(rows, R);
  const int threads = num_threads();
  const double macs = static_cast<double>(rows) * static_cast<double>(np) * static_cast<double>(K);
  const bool split = threads > 1 && units > 1 && macs >= gemm_driver::kThreadMinMacs;

  for (int64_t b = 0; b < g.batch; ++b) {
    const float* long_op = transposed ? g.B + b * g.stride_b : g.A + b * g.stride_a;
    const float* narrow_op = transposed ? g.A + b * g.stride_a : g.B + b * g.stride_b;
    float* C = g.C + b * g.stride_c;
    pack_narrow(narrow_op, ldn, narrow_along_k, K, n, np, bp);
    auto run_rows = [&](int64_t u0, int64_t u1) {
      const int64_t i0 = u0 * R, i1 = std::min(rows, u1 * R);
      if (i0 >= i1) return;
      accumulate(nv, along_cols, long_op, lda, i0, i1, K, bp, n, acc, tiles);
      write_c(acc, np, i0, i1, n, g.alpha, g.beta, C, g.ldc, transposed);
    };
    if (split) {
      parallel_for(threads, [&](int64_t t, int64_t, int) {
        auto [u0, u1] = gemm_driver::share(units, static_cast<int>(t), threads);
        run_rows(u0, u1);
      });
    } else {
      run_rows(0, units);
    }
  }
  return true;
}

}  // namespace SFT_NS
}  // namespace sft
