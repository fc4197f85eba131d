// Narrow fp32 GEMMs: C (M x N) at most kMaxV vectors wide with M and K long, and the transposed case (C at most
// kMaxV vectors tall, op(A) stored (K, M)). These are a rank-r LoRA adapter's GEMMs: x·Aᵀ and g·B (N = r), B's
// gradient gᵀ·(x·Aᵀ) (N = r, op(A) transposed) and A's gradient (g·B)ᵀ·x (M = r, run as its transpose). The packed
// path (gemm.cc) pads such a C to whole register tiles and packs all of op(A) for a few columns of work: it ran
// them at 30-40% of its own speed on one core. Here only the narrow operand (K x n, at most a few hundred KiB) is
// packed, zero padded to whole vectors; the long operand is read in place, by register tiles along its rows or
// streamed by rows when it is stored (K, rows) (docs/LORA.md has the measurements).
// Every element of C is one sum over k in order (the streamed path only stores and reloads the fp32
// accumulators between groups of k), so the result does not depend on the thread count, on the tile an element
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

// ---- The long operand stored (K, rows): streamed by rows ----
// A weight gradient's g or x (K the tokens): its rows k are contiguous across the rows of C, so rather than
// register tiles that walk its columns (lines lda apart, beyond the hardware streamer's 4 KiB page) it is
// streamed row by row: each group of kStreamK of its rows updates a chunk of acc of at most kStreamBytes (held
// in L2), acc[i] += sum over the group of a[k][i] * bp[k]. Loads, FMAs and stores per
// row of acc are NV + kStreamK, kStreamK*NV and NV. Each element still sums over k in order.
constexpr int kStreamK = 4;
constexpr int64_t kStreamBytes = 128 << 10;

template <int NV, int U>
void stream_group(const float* a, int64_t lda, int64_t c0, int64_t c1, int64_t k, const float* bp, float* acc, bool first) {
  constexpr int64_t np = NV * W;
  VF d[U][NV];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) d[u][v] = load(bp + (k + u) * np + v * W);
  const float* rows[U];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u) rows[u] = a + (k + u) * lda;
  for (int64_t i = c0; i < c1; ++i) {
    float* out = acc + i * np;
    VF c[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[v] = first ? zero() : load(out + v * W);
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const VF x = set1(rows[u][i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[v] = fmadd(x, d[u][v], c[v]);
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(out + v * W, c[v]);
  }
}

template <int NV>
void stream_rows(const float* a, int64_t lda, int64_t i0, int64_t i1, int64_t K, const float* bp, float* acc) {
  constexpr int64_t chunk = kStreamBytes / (sizeof(float) * NV * W);
  for (int64_t c0 = i0; c0 < i1; c0 += chunk) {
    const int64_t c1 = std::min(i1, c0 + chunk);
    int64_t k = 0;
    for (; k + kStreamK <= K; k += kStreamK) stream_group<NV, kStreamK>(a, lda, c0, c1, k, bp, acc, k == 0);
    for (; k < K; ++k) stream_group<NV, 1>(a, lda, c0, c1, k, bp, acc, k == 0);
  }
}

void accumulate(int nv, bool along_cols, const float* a, int64_t lda, int64_t i0, int64_t i1, int64_t K, const float* bp, float* acc) {
  if (along_cols) {
    switch (nv) {
      case 1: return stream_rows<1>(a, lda, i0, i1, K, bp, acc);
      case 2: return stream_rows<2>(a, lda, i0, i1, K, bp, acc);
      case 3: return stream_rows<3>(a, lda, i0, i1, K, bp, acc);
      default: return stream_rows<4>(a, lda, i0, i1, K, bp, acc);
    }
  }
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

  gemm_driver::Scratch scratch(sizeof(float) * static_cast<size_t>((K + rows) * np));
  float* bp = static_cast<float*>(scratch.ptr);
  float* acc = bp + K * np;
  // Threads split the rows of C (of Cᵀ when transposed) in whole register tiles.
  const int64_t R = along_cols ? 8 : rows_for(nv);
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
      accumulate(nv, along_cols, long_op, lda, i0, i1, K, bp, acc);
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
