// Final projection fused with cross-entropy, in vocab chunks: for each chunk the (N, chunk) logits are
// computed, folded into an online max / sum-exp per row (forward) or turned into dlogits and multiplied back
// into dh and dw (backward), then dropped, so (N, V) logits never exist. Scratch: N * chunk floats.
// The chunk products run on the local blocked helpers below; they are the three GEMMs (NT, NN accumulate,
// TN accumulate) that k::gemm will take over once it lands, and like it they split output rows statically,
// so every output element is one thread's fixed-order sum (results do not depend on the thread count).
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
constexpr int64_t kRowBlock = 64;   // rows of one operand kept hot while the other streams past them

// out[0..3] = a . b_k for four rows b_k, length K.
inline void dot4(const float* a, const float* b0, const float* b1, const float* b2, const float* b3, int64_t K,
                 float* out) {
  VF s0 = zero(), s1 = zero(), s2 = zero(), s3 = zero();
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    const VF av = load(a + k);
    s0 = fmadd(av, load(b0 + k), s0);
    s1 = fmadd(av, load(b1 + k), s1);
    s2 = fmadd(av, load(b2 + k), s2);
    s3 = fmadd(av, load(b3 + k), s3);
  }
  if (k < K) {
    const int64_t n = K - k;
    const VF av = load_partial(a + k, n);
    s0 = fmadd(av, load_partial(b0 + k, n), s0);
    s1 = fmadd(av, load_partial(b1 + k, n), s1);
    s2 = fmadd(av, load_partial(b2 + k, n), s2);
    s3 = fmadd(av, load_partial(b3 + k, n), s3);
  }
  out[0] = reduce_add(s0);
  out[1] = reduce_add(s1);
  out[2] = reduce_add(s2);
  out[3] = reduce_add(s3);
}

// C (M, N) = A (M, K) . B (N, K)^T, all row-major and contiguous.
void gemm_nt(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  parallel_for_grain(M, nnk::row_grain(N * K / 16 + 1), [&](int64_t m0, int64_t m1, int) {
    for (int64_t mb = m0; mb < m1; mb += kRowBlock) {
      const int64_t me = mb + kRowBlock < m1 ? mb + kRowBlock : m1;
      for (int64_t nb = 0; nb < N; nb += 16) {
        const int64_t ne = nb + 16 < N ? nb + 16 : N;
        for (int64_t m = mb; m < me; ++m) {
          const float* a = A + m * K;
          float* c = C + m * N;
          int64_t n = nb;
          for (; n + 4 <= ne; n += 4) dot4(a, B + n * K, B + (n + 1) * K, B + (n + 2) * K, B + (n + 3) * K, K, c + n);
          for (; n < ne; ++n) c[n] = nnk::dot(a, B + n * K, K);
        }
      }
    }
  });
}

// C (M, N) += A (M, K) . B (K, N), contiguous. Each row of C sums the K terms in blocks, in order.
void gemm_nn_acc(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  parallel_for_grain(M, nnk::row_grain(N * K / 16 + 1), [&](int64_t m0, int64_t m1, int) {
    for (int64_t kb = 0; kb < K; kb += kRowBlock) {
      const int64_t nk = K - kb < kRowBlock ? K - kb : kRowBlock;
      for (int64_t m = m0; m < m1; ++m) nnk::rows_axpy(A + m * K + kb, 1, nk, B + kb * N, N, C + m * N, N);
    }
  });
}

// C (M, N) += A (K, M)^T . B (K, N), contiguous. Each row of C sums the K terms in blocks, in order.
void gemm_tn_acc(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  parallel_for_grain(M, nnk::row_grain(N * K / 16 + 1), [&](int64_t m0, int64_t m1, int) {
    for (int64_t kb = 0; kb < K; kb += kRowBlock) {
      const int64_t nk = K - kb < kRowBlock ? K - kb : kRowBlock;
      for (int64_t m = m0; m < m1; ++m) nnk::rows_axpy(A + kb * M + m, M, nk, B + kb * N, N, C + m * N, N);
    }
  });
}

int64_t first_bad_label(const CrossEntropyArgs& a) {
  for (int64_t r = 0; r < a.N; ++r)
    if (a.labels[r] != kIgnore && (a.labels[r] < 0 || a.labels[r] >= a.V)) return r;
  return -1;
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
    gemm_nt(a.h, a.w + c0 * d, logits, N, n, d);
    parallel_for_grain(N, nnk::row_grain(n), [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = logits + r * n;
        VF mx = set1(m[r]);
        int64_t j = 0;
        for (; j + W <= n; j += W) mx = max(mx, load(row + j));
        if (j < n) mx = max(mx, load_partial(row + j, n - j, -std::numeric_limits<float>::infinity()));
        const float mnew = reduce_max(mx);
        const VF vm = set1(mnew);
        VF s = zero();
        for (j = 0; j + W <= n; j += W) s = add(s, exp(sub(load(row + j), vm)));
        if (j < n) s = add(s, exp(sub(load_partial(row + j, n - j, -std::numeric_limits<float>::infinity()), vm)));
        a.lse[r] = a.lse[r] * std::exp(m[r] - mnew) + reduce_add(s);
        m[r] = mnew;
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
    gemm_nt(a.h, a.w + c0 * d, dl, N, n, d);
    // dlogits = (softmax - onehot) * grad_scale; ignored rows contribute nothing
    parallel_for_grain(N, nnk::row_grain(n), [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        float* row = dl + r * n;
        const int32_t y = a.labels[r];
        if (y == kIgnore) {
          nnk::zero_row(row, n);
          continue;
        }
        const VF vl = set1(a.lse[r]), gs = set1(a.grad_scale);
        for (int64_t j = 0; j < n; j += W) {
          const int64_t len = n - j < W ? n - j : W;
          store_partial(row + j, mul(exp(sub(load_partial(row + j, len), vl)), gs), len);
        }
        if (y >= c0 && y < c0 + n) row[y - c0] -= a.grad_scale;
      }
    });
    gemm_nn_acc(dl, a.w + c0 * d, a.dh, N, d, n);       // dh += dlogits . w_c
    gemm_tn_acc(dl, a.h, a.dw + c0 * d, n, d, N);       // dw_c += dlogits^T . h
  }
  return -1;
}

}  // namespace SFT_NS
}  // namespace sft
