// The BLIS-style loop nest and threading of the packed GEMM, shared by the fp32 kernels (kernels/simd/gemm.cc,
// once per ISA) and the bf16 vdpbf16ps kernel (kernels/bf16/gemm_dpbf16.cc). A policy type P supplies the
// packed element type, the register tile and cache blocks, the packing and the macro-kernel; this file cuts
// the problem into blocks and splits C between threads. Threads split C statically (never K), so every
// element of C is computed by the same sequence of operations whatever the thread count.
// Everything here has internal linkage: each including file gets its own copy, built with its own ISA flags.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "memory.h"
#include "runtime.h"

namespace sft {
namespace {
namespace gemm_driver {

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
  bool bf16;
};

// C = beta * C (beta == 0 writes zeros without reading): the whole GEMM when K == 0 or alpha == 0.
inline void scale_c(const Problem& p) {
  for (int64_t i = 0; i < p.M; ++i) {
    float* c = p.C + i * p.ldc;
    if (p.beta == 0.f) std::memset(c, 0, sizeof(float) * p.N);
    else if (p.beta != 1.f)
      for (int64_t j = 0; j < p.N; ++j) c[j] *= p.beta;
  }
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Depth of the K blocks: K cut into equal blocks of at most kc_max, rounded up to a multiple of 8
// (so every block but the last has an even depth, which the bf16 pair panels rely on).
inline int64_t k_block(int64_t K, int64_t kc_max) { return std::min(K, round_up(ceil_div(K, ceil_div(K, kc_max)), 8)); }

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
inline std::pair<int64_t, int64_t> share(int64_t n, int tid, int nt) { return {n * tid / nt, n * (tid + 1) / nt}; }

// One GEMM, run by thread tid of nt (all nt call it together; nt == 1 runs alone). ap: the shared
// packed-A buffer (MB x KC); bp: this thread's packed-B buffer (KC x NB). The threads split C's columns
// when there are enough, else its rows; they pack the A block together and meet at the barrier.
template <class P>
void gemm_one(const Problem& p, typename P::Packed* ap, typename P::Packed* bp, int tid, int nt, SpinBarrier* barrier) {
  constexpr int MR = P::MR, NR = P::NR;
  if (p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.f) {
    auto [i0, i1] = share(p.M, tid, nt);
    Problem part = p;
    part.M = i1 - i0;
    part.C = p.C + i0 * p.ldc;
    scale_c(part);
    return;
  }
  const int64_t KB = k_block(p.K, P::KC);
  const int64_t n_panels = ceil_div(p.N, NR);
  for (int64_t ic = 0; ic < p.M; ic += P::MB) {
    const int64_t mb = std::min(P::MB, p.M - ic);
    const int64_t m_panels = ceil_div(mb, MR);
    const bool split_n = n_panels >= 2 * nt || n_panels >= m_panels;
    for (int64_t pc = 0; pc < p.K; pc += KB) {
      const int64_t kc = std::min(KB, p.K - pc);
      const float beta = pc == 0 ? p.beta : 1.f;
      auto [a0, a1] = share(m_panels, tid, nt);
      P::pack_a(p, ic, mb, pc, kc, a0, a1, ap);
      if (nt > 1) barrier->wait();   // the whole A block is packed

      // This thread owns panels [s0, s1) of N (split_n) or of the A block (rows), and walks its columns
      // in B blocks of at most NB, cut evenly.
      auto [s0, s1] = share(split_n ? n_panels : m_panels, tid, nt);
      if (s0 < s1) {
        const int64_t q0 = split_n ? s0 : 0, q1 = split_n ? s1 : n_panels;
        const int64_t pa0 = split_n ? 0 : s0, pa1 = split_n ? m_panels : s1;
        const int64_t j_begin = q0 * NR, j_end = std::min(p.N, q1 * NR);
        const int64_t nb_max = round_up(ceil_div(j_end - j_begin, ceil_div(j_end - j_begin, P::NB)), NR);
        for (int64_t jc = j_begin; jc < j_end; jc += nb_max) {
          const int64_t nb = std::min(nb_max, j_end - jc);
          P::pack_b(p, pc, kc, jc, nb, bp);
          P::macro_kernel(mb, nb, kc, pa0, pa1, ap, bp, p.C + ic * p.ldc + jc, p.ldc, p.alpha, beta);
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

// The whole batched GEMM with policy P: scratch, and the choice between whole GEMMs per thread (by batch),
// threads within each GEMM, or one thread.
template <class P>
void run(const GemmArgs& g) {
  using Packed = typename P::Packed;
  constexpr int MR = P::MR, NR = P::NR;
  if (g.batch <= 0 || g.M == 0 || g.N == 0) return;
  const int64_t depth = P::depth(k_block(std::max<int64_t>(g.K, 1), P::KC));
  // Buffer sizes in packed elements, rounded so every piece stays 64-byte aligned. A thread's B block is
  // at most NB wide plus the rounding of an even cut to NR.
  constexpr int64_t kAlign = 64 / sizeof(Packed);
  const int64_t a_elems = round_up(std::min(P::MB, round_up(g.M, MR)) * depth, kAlign);
  const int64_t b_elems = round_up(std::min(P::NB + NR, round_up(g.N, NR)) * depth, kAlign);
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
  Scratch scratch(sizeof(Packed) * static_cast<size_t>(a_sets * a_elems + b_sets * b_elems));
  Packed* base = static_cast<Packed*>(scratch.ptr);
  std::vector<Packed*> b_bufs(b_sets);
  for (int t = 0; t < b_sets; ++t) b_bufs[t] = base + a_sets * a_elems + t * b_elems;

  auto problem = [&](int64_t b) {
    return Problem{g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.A + b * g.stride_a, g.lda,
                   g.B + b * g.stride_b, g.ldb, g.beta, g.C + b * g.stride_c, g.ldc, g.bf16};
  };
  if (by_batch) {
    parallel_for(g.batch, [&](int64_t b0, int64_t b1, int tid) {
      for (int64_t b = b0; b < b1; ++b) gemm_one<P>(problem(b), base + tid * a_elems, b_bufs[tid], 0, 1, nullptr);
    });
  } else if (within) {
    // One parallel region for the whole call: part t runs on thread t, so the barrier sees all of them.
    SpinBarrier barrier(threads);
    parallel_for(threads, [&](int64_t t, int64_t, int) {
      const int tid = static_cast<int>(t);
      for (int64_t b = 0; b < g.batch; ++b) gemm_one<P>(problem(b), base, b_bufs[tid], tid, threads, &barrier);
    });
  } else {
    for (int64_t b = 0; b < g.batch; ++b) gemm_one<P>(problem(b), base, b_bufs[0], 0, 1, nullptr);
  }
}

}  // namespace gemm_driver
}  // namespace
}  // namespace sft
