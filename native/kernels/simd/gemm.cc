// BLIS-style packed fp32 GEMM, compiled once per ISA: panels of op(A) and op(B) are packed into aligned
// scratch (transposes are absorbed by the packing), and an MR x NR register-blocked micro-kernel runs over
// them inside cache blocks. Threads split C statically (never K), so every element of C is computed by
// the same sequence of operations whatever the thread count: results are bit-identical.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/simd/simd.h"
#include "memory.h"
#include "runtime.h"


namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;

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

// Below this many multiply-adds a GEMM stays on one thread (waking the pool would cost more).
constexpr double kThreadMinMacs = 1 << 20;

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
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // u[4i + j] holds rows 4i..4i+3 of columns j, j+4, j+8, j+12 (one per 128-bit lane).
  for (int j = 0; j < 4; ++j) {
    __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), v3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j].v = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[j + 8].v = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[j + 4].v = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[j + 12].v = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
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

// Source panels stored along k (one line per r, lines ld apart): dst[k*R + r] = src[r*ld + k], r < rv.
// Reads W values of each of up to W lines (whole cache lines, whatever ld aliases to) and transposes them
// in registers.
template <int R>
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
template <int R>
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
        if (n == W) store(d + o, x);
        else store_partial(d + o, x, n);
      }
    }
  }
}

// Packs micro-panels [pan0, pan1) of rows [i0, i0 + mb) x k [k0, k0 + kc) of op(A) (MR rows each).
void pack_a(const Problem& p, int64_t i0, int64_t mb, int64_t k0, int64_t kc, int64_t pan0, int64_t pan1, float* dst) {
  if (p.trans_a) {
    // stored (K, M): row k holds the panels' rows contiguously
    pack_rows<MR>(p.A + k0 * p.lda + i0 + pan0 * MR, p.lda, mb - pan0 * MR, kc, pan1 - pan0, dst + pan0 * MR * kc);
  } else {
    // stored (M, K): each panel is a transpose of MR rows
    for (int64_t q = pan0; q < pan1; ++q) {
      const int rv = static_cast<int>(std::min<int64_t>(MR, mb - q * MR));
      pack_lines<MR>(p.A + (i0 + q * MR) * p.lda + k0, p.lda, rv, kc, dst + q * MR * kc);
    }
  }
}

// Packs k [k0, k0 + kc) x columns [j0, j0 + nb) of op(B) into NR-column micro-panels.
void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t j0, int64_t nb, float* dst) {
  const int64_t panels = (nb + NR - 1) / NR;
  if (!p.trans_b) {
    // stored (K, N): row k holds the block's columns contiguously
    pack_rows<NR>(p.B + k0 * p.ldb + j0, p.ldb, nb, kc, panels, dst);
  } else {
    // stored (N, K): each panel is a transpose of NR rows
    for (int64_t q = 0; q < panels; ++q) {
      const int rv = static_cast<int>(std::min<int64_t>(NR, nb - q * NR));
      pack_lines<NR>(p.B + (j0 + q * NR) * p.ldb + k0, p.ldb, rv, kc, dst + q * NR * kc);
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
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Depth of the K blocks: K cut into equal blocks of at most KC, rounded up to a multiple of 8.
int64_t k_block(int64_t K) { return std::min(K, round_up(ceil_div(K, ceil_div(K, KC)), 8)); }

// A spinning barrier for the threads of one parallel region. Waking pool threads costs ~50 us per
// parallel_for on a VM, so a GEMM enters the pool once and syncs its threads here between K blocks.
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void wait() {
    const int phase = phase_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      phase_.fetch_add(1, std::memory_order_release);
      return;
    }
    // Spin briefly (the other threads are usually microseconds away), then yield the core.
    for (int spins = 0; phase_.load(std::memory_order_acquire) == phase; ++spins) {
      if (spins < 2048) _mm_pause();
      else std::this_thread::yield();
    }
  }

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<int> phase_{0};
};

// Thread tid's share [begin, end) of n items split statically over nt threads.
std::pair<int64_t, int64_t> share(int64_t n, int tid, int nt) { return {n * tid / nt, n * (tid + 1) / nt}; }

// One GEMM, run by thread tid of nt (all nt call it together; nt == 1 runs alone). ap: the shared
// packed-A buffer (MB x KC); bp: this thread's packed-B buffer (KC x NB). The threads split C's columns
// when there are enough, else its rows; they pack the A block together and meet at the barrier.
void gemm_one(const Problem& p, float* ap, float* bp, int tid, int nt, SpinBarrier* barrier) {
  if (p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.f) {
    auto [i0, i1] = share(p.M, tid, nt);
    scale_c(Problem{p.trans_a, p.trans_b, i1 - i0, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta,
                    p.C + i0 * p.ldc, p.ldc});
    return;
  }
  const int64_t KB = k_block(p.K);
  const int64_t n_panels = ceil_div(p.N, NR);
  for (int64_t ic = 0; ic < p.M; ic += MB) {
    const int64_t mb = std::min(MB, p.M - ic);
    const int64_t m_panels = ceil_div(mb, MR);
    const bool split_n = n_panels >= 2 * nt || n_panels >= m_panels;
    for (int64_t pc = 0; pc < p.K; pc += KB) {
      const int64_t kc = std::min(KB, p.K - pc);
      const float beta = pc == 0 ? p.beta : 1.f;
      auto [a0, a1] = share(m_panels, tid, nt);
      pack_a(p, ic, mb, pc, kc, a0, a1, ap);
      if (nt > 1) barrier->wait();   // the whole A block is packed

      // This thread owns panels [s0, s1) of N (split_n) or of the A block (rows), and walks its columns
      // in B blocks of at most NB, cut evenly.
      auto [s0, s1] = share(split_n ? n_panels : m_panels, tid, nt);
      if (s0 < s1) {
        const int64_t q0 = split_n ? s0 : 0, q1 = split_n ? s1 : n_panels;
        const int64_t pa0 = split_n ? 0 : s0, pa1 = split_n ? m_panels : s1;
        const int64_t j_begin = q0 * NR, j_end = std::min(p.N, q1 * NR);
        const int64_t nb_max = round_up(ceil_div(j_end - j_begin, ceil_div(j_end - j_begin, NB)), NR);
        for (int64_t jc = j_begin; jc < j_end; jc += nb_max) {
          const int64_t nb = std::min(nb_max, j_end - jc);
          pack_b(p, pc, kc, jc, nb, bp);
          macro_kernel(mb, nb, kc, pa0, pa1, ap, bp, p.C + ic * p.ldc + jc, p.ldc, p.alpha, beta);
        }
      }
      if (nt > 1) barrier->wait();   // every thread is done with this A block
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
  const int64_t kc = k_block(std::max<int64_t>(g.K, 1));
  // Buffer sizes in floats, rounded to 16 so every piece stays 64-byte aligned. A thread's B block is
  // at most NB wide plus the rounding of an even cut to NR.
  const int64_t a_elems = round_up(std::min(MB, round_up(g.M, MR)) * kc, 16);
  const int64_t b_elems = round_up(std::min(NB + NR, round_up(g.N, NR)) * kc, 16);
  const int threads = num_threads();
  const double macs = static_cast<double>(g.M) * static_cast<double>(g.N) * static_cast<double>(std::max<int64_t>(g.K, 1));

  // Many GEMMs whose C blocks cannot overlap go to threads whole (no packing shared, no sync per block):
  // C's are disjoint when stacked (stride_c past the last element) or interleaved within rows.
  const bool disjoint = g.batch == 1 || g.stride_c >= (g.M - 1) * g.ldc + g.N ||
                        (g.stride_c >= g.N && (g.batch - 1) * g.stride_c + g.N <= g.ldc);
  const bool by_batch = threads > 1 && g.batch >= threads && disjoint &&
                        (g.batch % threads == 0 || g.batch >= 4 * threads || macs < kThreadMinMacs);
  const bool within = threads > 1 && !by_batch && macs >= kThreadMinMacs;
  const int a_sets = by_batch ? threads : 1;
  const int b_sets = by_batch || within ? threads : 1;
  Scratch scratch(sizeof(float) * static_cast<size_t>(a_sets * a_elems + b_sets * b_elems));
  float* base = static_cast<float*>(scratch.ptr);
  std::vector<float*> b_bufs(b_sets);
  for (int t = 0; t < b_sets; ++t) b_bufs[t] = base + a_sets * a_elems + t * b_elems;

  auto problem = [&](int64_t b) {
    return Problem{g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.A + b * g.stride_a, g.lda,
                   g.B + b * g.stride_b, g.ldb, g.beta, g.C + b * g.stride_c, g.ldc};
  };
  if (by_batch) {
    parallel_for(g.batch, [&](int64_t b0, int64_t b1, int tid) {
      for (int64_t b = b0; b < b1; ++b) gemm_one(problem(b), base + tid * a_elems, b_bufs[tid], 0, 1, nullptr);
    });
  } else if (within) {
    // One parallel region for the whole call: part t runs on thread t, so the barrier sees all of them.
    SpinBarrier barrier(threads);
    parallel_for(threads, [&](int64_t t, int64_t, int) {
      const int tid = static_cast<int>(t);
      for (int64_t b = 0; b < g.batch; ++b) gemm_one(problem(b), base, b_bufs[tid], tid, threads, &barrier);
    });
  } else {
    for (int64_t b = 0; b < g.batch; ++b) gemm_one(problem(b), base, b_bufs[0], 0, 1, nullptr);
  }
}

}  // namespace SFT_NS
}  // namespace sft
