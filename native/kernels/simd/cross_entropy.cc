// Final projection fused with cross-entropy, in vocab chunks: for each chunk the (N, chunk) logits are
// computed, folded into an online max / sum-exp per row (forward) or turned into dlogits and multiplied back
// into dh and dw (backward), then dropped, so (N, V) logits never exist. Scratch: N * chunk floats.
// The chunk products run on the local blocked helpers below; they are the three GEMMs (NT, NN accumulate,
// TN accumulate) that k::gemm will take over once it lands, and like it they split output rows statically,
// so every output element is one thread's fixed-order sum (results do not depend on the thread count).
// ce_fused_sweep (training) is chunked over rows instead: for a block of rows it makes the full (R, V)
// logits once and turns them into loss, lse, dh and the block's share of dw, so one logits GEMM serves
// forward and backward (three vocab-sized GEMMs per step instead of four).
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/kernels.h"
#include "kernels/simd/nn_util.h"

namespace sft {
namespace SFT_NS {

using namespace simd;

namespace {

constexpr int32_t kIgnore = -100;

// The chunk products run on the packed GEMM of this ISA (called at the top level, never from inside a
// parallel_for task: the pool is not re-entrant). Row-major, contiguous.
// C (M, N) = A (M, K) . B (N, K)^T
void gemm_nt(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K, bool bf16) {
  gemm(GemmArgs{false, true, M, N, K, 1.f, A, K, B, K, 0.f, C, N, 1, 0, 0, 0, bf16});
}

// C (M, N) += A (M, K) . B (K, N)
void gemm_nn_acc(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K, bool bf16) {
  gemm(GemmArgs{false, false, M, N, K, 1.f, A, K, B, N, 1.f, C, N, 1, 0, 0, 0, bf16});
}

// C (M, N) += A (K, M)^T . B (K, N)
void gemm_tn_acc(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K, bool bf16) {
  gemm(GemmArgs{true, false, M, N, K, 1.f, A, M, B, N, 1.f, C, N, 1, 0, 0, 0, bf16});
}

int64_t first_bad_label(const CrossEntropyArgs& a) {
  for (int64_t r = 0; r < a.N; ++r)
    if (a.labels[r] != kIgnore && (a.labels[r] < 0 || a.labels[r] >= a.V)) return r;
  return -1;
}

// Max of a row of n logits together with m0, and the sum of exp(logit - that max) over the row.
struct MaxSumExp { float m, s; };
inline MaxSumExp max_sum_exp(const float* row, int64_t n, float m0) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  VF mx = set1(m0);
  int64_t j = 0;
  for (; j + W <= n; j += W) mx = max(mx, load(row + j));
  if (j < n) mx = max(mx, load_partial(row + j, n - j, kNegInf));
  const float m = reduce_max(mx);
  const VF vm = set1(m);
  VF s = zero();
  for (j = 0; j + W <= n; j += W) s = add(s, exp(sub(load(row + j), vm)));
  if (j < n) s = add(s, exp(sub(load_partial(row + j, n - j, kNegInf), vm)));
  return {m, reduce_add(s)};
}

// In place: row (n logits) becomes softmax * grad_scale given the row's lse (the one-hot part is the caller's).
inline void scaled_softmax(float* row, int64_t n, float lse, float grad_scale) {
  const VF vl = set1(lse), gs = set1(grad_scale);
  for (int64_t j = 0; j < n; j += W) {
    const int64_t len = n - j < W ? n - j : W;
    store_partial(row + j, mul(exp(sub(load_partial(row + j, len), vl)), gs), len);
  }
}

}  // namespace

int64_t ce_fused_fwd(const CrossEntropyArgs& a) {
  if (int64_t bad = first_bad_label(a); bad >= 0) return bad;
  const int64_t N = a.N, V = a.V, d = a.d, C = a.chunk < V ? a.chunk : V;
  nnk::Scratch scratch(N * C + 2 * N);
  float* logits = scratch.get();
  float* m = logits + N * C;
  float* target = m + N;
  for (int64_t r = 0; r < N; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    a.lse[r] = 0.f;  // the running sum-exp until the end
    target[r] = 0.f;
  }
  for (int64_t c0 = 0; c0 < V; c0 += C) {
    const int64_t n = V - c0 < C ? V - c0 : C;
    gemm_nt(a.h, a.w + c0 * d, logits, N, n, d, a.bf16);
    parallel_for_grain(N, nnk::row_grain(n), [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = logits + r * n;
        const MaxSumExp ms = max_sum_exp(row, n, m[r]);
        a.lse[r] = a.lse[r] * std::exp(m[r] - ms.m) + ms.s;
        m[r] = ms.m;
        const int32_t y = a.labels[r];
        if (y >= c0 && y < c0 + n) target[r] = row[y - c0];
      }
    });
  }
  double loss_sum = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < N; ++r) {
    a.lse[r] = m[r] + std::log(a.lse[r]);
    const bool trained = a.labels[r] != kIgnore;
    const float loss = trained ? a.lse[r] - target[r] : 0.f;
    if (a.row_loss) a.row_loss[r] = loss;
    if (trained) {
      loss_sum += loss;
      ++count;
    }
  }
  *a.loss_sum = loss_sum;
  *a.count = count;
  return -1;
}

int64_t ce_fused_bwd(const CrossEntropyArgs& a) {
  if (int64_t bad = first_bad_label(a); bad >= 0) return bad;
  const int64_t N = a.N, V = a.V, d = a.d, C = a.chunk < V ? a.chunk : V;
  nnk::Scratch scratch(N * C);
  float* dl = scratch.get();
  std::memset(a.dh, 0, sizeof(float) * N * d);
  for (int64_t c0 = 0; c0 < V; c0 += C) {
    const int64_t n = V - c0 < C ? V - c0 : C;
    gemm_nt(a.h, a.w + c0 * d, dl, N, n, d, a.bf16);
    // dlogits = (softmax - onehot) * grad_scale; ignored rows contribute nothing
    parallel_for_grain(N, nnk::row_grain(n), [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        float* row = dl + r * n;
        const int32_t y = a.labels[r];
        if (y == kIgnore) {
          nnk::zero_row(row, n);
          continue;
        }
        scaled_softmax(row, n, a.lse[r], a.grad_scale);
        if (y >= c0 && y < c0 + n) row[y - c0] -= a.grad_scale;
      }
    });
    gemm_nn_acc(dl, a.w + c0 * d, a.dh, N, d, n, a.bf16);       // dh += dlogits . w_c
    gemm_tn_acc(dl, a.h, a.dw + c0 * d, n, d, N, a.bf16);       // dw_c += dlogits^T . h
  }
  return -1;
}

int64_t ce_fused_sweep(const CrossEntropyArgs& a) {
  if (int64_t bad = first_bad_label(a); bad >= 0) return bad;
  const int64_t N = a.N, V = a.V, d = a.d;
  const int64_t R = a.row_block < 1 ? 1 : (a.row_block < N ? a.row_block : N);
  nnk::Scratch scratch(R * V + R);
  float* dl = scratch.get();
  float* loss = dl + R * V;
  double loss_sum = 0;
  int64_t count = 0;
  const float gs = a.grad_scale;
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t rows = N - r0 < R ? N - r0 : R;
    const float* h = a.h + r0 * d;
    gemm_nt(h, a.w, dl, rows, V, d, a.bf16);  // logits (rows, V)
    // Per row: lse and loss, then dlogits = (softmax - onehot) * grad_scale in place (ignored rows: zeros).
    // Each row is one thread's fixed-order work, so nothing depends on the thread count.
    parallel_for_grain(rows, nnk::row_grain(V), [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t r = r0 + i;
        float* row = dl + i * V;
        const MaxSumExp ms = max_sum_exp(row, V, -std::numeric_limits<float>::infinity());
        const float lse = ms.m + std::log(ms.s);
        a.lse[r] = lse;
        const int32_t y = a.labels[r];
        if (y == kIgnore) {
          loss[i] = 0.f;
          nnk::zero_row(row, V);
          continue;
        }
        loss[i] = lse - row[y];
        scaled_softmax(row, V, lse, gs);
        row[y] -= gs;
      }
    });
    // Row order, on the calling thread: the sum does not depend on the thread count or the block size.
    for (int64_t i = 0; i < rows; ++i) {
      if (a.row_loss) a.row_loss[r0 + i] = loss[i];
      if (a.labels[r0 + i] == kIgnore) continue;
      loss_sum += loss[i];
      ++count;
    }
    // dh_blk = dlogits . w (overwrite); dw += dlogits^T . h_blk. Either may be skipped (no gradient wanted).
    if (a.dh) gemm(GemmArgs{false, false, rows, d, V, 1.f, dl, V, a.w, d, 0.f, a.dh + r0 * d, d, 1, 0, 0, 0, a.bf16});
    if (a.dw) gemm_tn_acc(dl, h, a.dw, V, d, rows, a.bf16);
  }
  *a.loss_sum = loss_sum;
  *a.count = count;
  return -1;
}

}  // namespace SFT_NS
}  // namespace sft
