// BLIS-style packed fp32 GEMM, compiled once per ISA: panels of op(A) and op(B) are packed into aligned
// scratch (transposes are absorbed by the packing), and an MR x NR register-blocked micro-kernel runs over
// them inside MC/KC/NC cache blocks. Threads split C statically (never K), so every element of C is
// computed by the same sequence of operations whatever the thread count: results are bit-identical.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/simd/simd.h"
#include "memory.h"
#include "runtime.h"

namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;

// Register tile MR x NR (NR = NV vectors) and cache blocks. The A block (MC x KC) lives in L2, the B
// micro-panel (KC x NR) in L1 while the micro-kernel sweeps the A micro-panels of the block; the packed
// B panel (KC x NC) is shared by the threads.
#if SFT_ISA == 2
constexpr int MR = 14, NV = 2;          // 28 accumulators + 2 B vectors + 1 broadcast of 32 zmm
constexpr int64_t KC = 256, MC = MR * 24, NC = 2048;
#else
constexpr int MR = 6, NV = 2;           // 12 accumulators + 2 B vectors + 1 broadcast of 16 ymm
constexpr int64_t KC = 256, MC = MR * 24, NC = 1024;
#endif
constexpr int NR = NV * W;

// Below this many multiply-adds a GEMM stays on one thread (waking the pool would cost more).
constexpr double kThreadMinMacs = 1 << 18;

struct Problem {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha;
  const float* A; int64_t lda;
  const float* B; int64_t ldb;
  float beta;
  float* C; int64_t ldc;
};

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

  for (int r = 0; r < MR; ++r) {
    if (kFull || r < mv) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
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

// Packs rows [i0, i0 + mc) x cols [k0, k0 + kc) of op(A) into MR-row micro-panels: panel p holds
// element (r, k) at p*MR*kc + k*MR + r; rows past mc are zero.
void pack_a(const Problem& p, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int mv = static_cast<int>(std::min<int64_t>(MR, mc - ir));
    float* d = dst + ir * kc;
    if (p.trans_a) {
      // stored (K, M): each k gives mv contiguous values
      const float* src = p.A + k0 * p.lda + i0 + ir;
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = src + k * p.lda;
        float* dk = d + k * MR;
        for (int r = 0; r < mv; ++r) dk[r] = s[r];
        for (int r = mv; r < MR; ++r) dk[r] = 0.f;
      }
    } else {
      // stored (M, K): a transpose of an mv x kc block
      const float* rows[MR];
      for (int r = 0; r < MR; ++r) rows[r] = p.A + (i0 + ir + std::min(r, mv - 1)) * p.lda + k0;
      if (mv == MR) {
        for (int64_t k = 0; k < kc; ++k) {
          float* dk = d + k * MR;
#pragma GCC unroll 16
          for (int r = 0; r < MR; ++r) dk[r] = rows[r][k];
        }
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          float* dk = d + k * MR;
          for (int r = 0; r < mv; ++r) dk[r] = rows[r][k];
          for (int r = mv; r < MR; ++r) dk[r] = 0.f;
        }
      }
    }
  }
}

// Packs rows [k0, k0 + kc) x cols [j0, j0 + nc) of op(B), micro-panels [pan0, pan1) of NR columns: panel q
// holds element (k, j) at q*NR*kc + k*NR + j; columns past nc are zero.
void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t pan0, int64_t pan1, float* dst) {
  for (int64_t q = pan0; q < pan1; ++q) {
    const int64_t jq = q * NR;
    const int nv = static_cast<int>(std::min<int64_t>(NR, nc - jq));
    float* d = dst + q * NR * kc;
    if (!p.trans_b) {
      // stored (K, N): each k gives nv contiguous values
      const float* src = p.B + k0 * p.ldb + j0 + jq;
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = src + k * p.ldb;
        float* dk = d + k * NR;
        if (nv == NR) {
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) store(dk + v * W, load(s + v * W));
        } else {
          for (int v = 0; v < NV; ++v) {
            int64_t left = nv - v * W;
            store(dk + v * W, left >= W ? load(s + v * W) : left > 0 ? load_partial(s + v * W, left) : zero());
          }
        }
      }
    } else {
      // stored (N, K): a transpose of a kc x nv block, read a column strip at a time
      constexpr int64_t KB = 16;
      for (int64_t kb = 0; kb < kc; kb += KB) {
        const int64_t kn = std::min<int64_t>(KB, kc - kb);
        for (int j = 0; j < NR; ++j) {
          if (j < nv) {
            const float* s = p.B + (j0 + jq + j) * p.ldb + k0 + kb;
            for (int64_t k = 0; k < kn; ++k) d[(kb + k) * NR + j] = s[k];
          } else {
            for (int64_t k = 0; k < kn; ++k) d[(kb + k) * NR + j] = 0.f;
          }
        }
      }
    }
  }
}

// Runs the micro-kernel over the packed A block (mc rows) and B micro-panels [pan0, pan1) of a panel nc
// wide; c points at the block's top-left element of C.
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, int64_t pan0, int64_t pan1, const float* ap, const float* bp,
                  float* c, int64_t ldc, float alpha, float beta) {
  for (int64_t q = pan0; q < pan1; ++q) {
    const int nv = static_cast<int>(std::min<int64_t>(NR, nc - q * NR));
    const float* b = bp + q * NR * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int mv = static_cast<int>(std::min<int64_t>(MR, mc - ir));
      float* ct = c + ir * ldc + q * NR;
      if (mv == MR && nv == NR) micro_kernel<true>(kc, ap + ir * kc, b, ct, ldc, alpha, beta, MR, NR);
      else micro_kernel<false>(kc, ap + ir * kc, b, ct, ldc, alpha, beta, mv, nv);
    }
  }
}

// C = beta * C (beta == 0 writes zeros without reading): the whole GEMM when K == 0 or alpha == 0.
void scale_c(const Problem& p) {
  for (int64_t i = 0; i < p.M; ++i) {
    float* c = p.C + i * p.ldc;
    if (p.beta == 0.f) std::memset(c, 0, sizeof(float) * p.N);
    else if (p.beta != 1.f)
      for (int64_t j = 0; j < p.N; ++j) c[j] *= p.beta;
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// One GEMM. bp: a packed-B buffer; ap[t]: thread t's packed-A buffer. threaded: split C over the pool.
void gemm_one(const Problem& p, float* bp, float* const* ap, bool threaded) {
  if (p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.f) {
    scale_c(p);
    return;
  }
  const int threads = threaded ? num_threads() : 1;
  const int64_t m_panels = (p.M + MR - 1) / MR;
  for (int64_t jc = 0; jc < p.N; jc += NC) {
    const int64_t nc = std::min(NC, p.N - jc);
    const int64_t n_panels = (nc + NR - 1) / NR;
    // Split rows of C when there are enough row panels for every thread, else columns of this panel.
    const bool split_m = m_panels >= 2 * threads || m_panels >= n_panels;
    for (int64_t pc = 0; pc < p.K; pc += KC) {
      const int64_t kc = std::min(KC, p.K - pc);
      const float beta = pc == 0 ? p.beta : 1.f;
      auto pack = [&](int64_t q0, int64_t q1, int) { pack_b(p, pc, kc, jc, nc, q0, q1, bp); };
      if (threads > 1) parallel_for(n_panels, pack);
      else pack(0, n_panels, 0);

      auto work = [&](int64_t s0, int64_t s1, int tid) {
        const int64_t i_begin = split_m ? s0 * MR : 0;
        const int64_t i_end = split_m ? std::min(p.M, s1 * MR) : p.M;
        const int64_t q0 = split_m ? 0 : s0, q1 = split_m ? n_panels : s1;
        float* a_buf = ap[tid];
        for (int64_t ic = i_begin; ic < i_end; ic += MC) {
          const int64_t mc = std::min(MC, i_end - ic);
          pack_a(p, ic, mc, pc, kc, a_buf);
          macro_kernel(mc, nc, kc, q0, q1, a_buf, bp, p.C + ic * p.ldc + jc, p.ldc, p.alpha, beta);
        }
      };
      if (threads > 1) parallel_for(split_m ? m_panels : n_panels, work);
      else work(0, split_m ? m_panels : n_panels, 0);
    }
  }
}

// Scratch for packing, from the caching pool, returned on every exit path.
struct Scratch {
  void* ptr = nullptr;
  size_t bucket = 0;
  explicit Scratch(size_t bytes) { ptr = pool_alloc(bytes, &bucket); }
  ~Scratch() { pool_free(ptr, bucket); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace

void gemm(const GemmArgs& g) {
  if (g.batch <= 0 || g.M == 0 || g.N == 0) return;
  const int64_t kc = std::min(KC, std::max<int64_t>(g.K, 1));
  // Buffer sizes in floats, rounded to 16 so every piece stays 64-byte aligned.
  const int64_t a_elems = round_up(std::min(MC, round_up(g.M, MR)) * kc, 16);
  const int64_t b_elems = round_up(std::min(NC, round_up(g.N, NR)) * kc, 16);
  const int threads = num_threads();
  const double macs = static_cast<double>(g.M) * static_cast<double>(g.N) * static_cast<double>(std::max<int64_t>(g.K, 1));

  // Many GEMMs whose C blocks cannot overlap go to threads whole (no packing shared, no sync per block):
  // C's are disjoint when stacked (stride_c past the last element) or interleaved within rows.
  const bool disjoint = g.batch == 1 || g.stride_c >= (g.M - 1) * g.ldc + g.N ||
                        (g.stride_c >= g.N && (g.batch - 1) * g.stride_c + g.N <= g.ldc);
  const bool by_batch = threads > 1 && g.batch >= threads && disjoint &&
                        (g.batch % threads == 0 || g.batch >= 4 * threads || macs < kThreadMinMacs);
  const bool within = threads > 1 && !by_batch && macs >= kThreadMinMacs;
  const int sets = by_batch ? threads : 1;      // packed-B buffers
  const int a_sets = by_batch || within ? threads : 1;
  Scratch scratch(sizeof(float) * static_cast<size_t>(sets * b_elems + a_sets * a_elems));
  float* base = static_cast<float*>(scratch.ptr);
  std::vector<float*> a_bufs(a_sets);
  for (int t = 0; t < a_sets; ++t) a_bufs[t] = base + sets * b_elems + t * a_elems;

  auto problem = [&](int64_t b) {
    return Problem{g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.A + b * g.stride_a, g.lda,
                   g.B + b * g.stride_b, g.ldb, g.beta, g.C + b * g.stride_c, g.ldc};
  };
  if (by_batch) {
    parallel_for(g.batch, [&](int64_t b0, int64_t b1, int tid) {
      for (int64_t b = b0; b < b1; ++b) gemm_one(problem(b), base + tid * b_elems, &a_bufs[tid], false);
    });
  } else {
    for (int64_t b = 0; b < g.batch; ++b) gemm_one(problem(b), base, a_bufs.data(), within);
  }
}

}  // namespace SFT_NS
}  // namespace sft
