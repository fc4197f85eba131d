// Naive reference of the final projection fused with cross-entropy: one row at a time, logits of one
// vocab chunk at a time with an online max / sum-exp, double dot products, single-threaded. The one-sweep
// training version makes one row's full logits once and derives the loss and both gradients from them.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

namespace sft::naive {

namespace {

constexpr int32_t kIgnore = -100;

int64_t first_bad_label(const CrossEntropyArgs& a) {
  for (int64_t r = 0; r < a.N; ++r)
    if (a.labels[r] != kIgnore && (a.labels[r] < 0 || a.labels[r] >= a.V)) return r;
  return -1;
}

// logits[j] = h_r . w_{c0 + j} for j < n
void chunk_logits(const CrossEntropyArgs& a, int64_t r, int64_t c0, int64_t n, std::vector<double>& logits) {
  const float* h = a.h + r * a.d;
  for (int64_t j = 0; j < n; ++j) {
    const float* w = a.w + (c0 + j) * a.d;
    double dot = 0;
    if (a.bf16)
      for (int64_t i = 0; i < a.d; ++i) dot += static_cast<double>(round_bf16(h[i])) * round_bf16(w[i]);
    else
      for (int64_t i = 0; i < a.d; ++i) dot += static_cast<double>(h[i]) * w[i];
    logits[j] = dot;
  }
}

}  // namespace

int64_t ce_fused_fwd(const CrossEntropyArgs& a) {
  if (int64_t bad = first_bad_label(a); bad >= 0) return bad;
  std::vector<double> logits(a.chunk < a.V ? a.chunk : a.V);
  double loss_sum = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < a.N; ++r) {
    double m = -std::numeric_limits<double>::infinity(), l = 0, target = 0;
    for (int64_t c0 = 0; c0 < a.V; c0 += a.chunk) {
      int64_t n = a.V - c0 < a.chunk ? a.V - c0 : a.chunk;
      chunk_logits(a, r, c0, n, logits);
      double mx = m;
      for (int64_t j = 0; j < n; ++j) mx = logits[j] > mx ? logits[j] : mx;
      l = l * std::exp(m - mx);
      m = mx;
      for (int64_t j = 0; j < n; ++j) l += std::exp(logits[j] - m);
      if (a.labels[r] >= c0 && a.labels[r] < c0 + n) target = logits[a.labels[r] - c0];
    }
    double lse = m + std::log(l);
    a.lse[r] = static_cast<float>(lse);
    double loss = a.labels[r] == kIgnore ? 0.0 : lse - target;
    if (a.row_loss) a.row_loss[r] = static_cast<float>(loss);
    if (a.labels[r] != kIgnore) {
      loss_sum += loss;
      ++count;
    }
  }
  *a.loss_sum = loss_sum;
  *a.count = count;
  return -1;
}

// dlogits = (softmax - onehot(label)) * grad_scale for trained rows; dh = dlogits @ w; dw += dlogits^T @ h.
int64_t ce_fused_bwd(const CrossEntropyArgs& a) {
  if (int64_t bad = first_bad_label(a); bad >= 0) return bad;
  std::memset(a.dh, 0, sizeof(float) * a.N * a.d);
  std::vector<double> logits(a.chunk < a.V ? a.chunk : a.V), dh(a.d);
  for (int64_t r = 0; r < a.N; ++r) {
    if (a.labels[r] == kIgnore) continue;
    const float* h = a.h + r * a.d;
    for (int64_t i = 0; i < a.d; ++i) dh[i] = 0;
    for (int64_t c0 = 0; c0 < a.V; c0 += a.chunk) {
      int64_t n = a.V - c0 < a.chunk ? a.V - c0 : a.chunk;
      chunk_logits(a, r, c0, n, logits);
      for (int64_t j = 0; j < n; ++j) {
        double g = std::exp(logits[j] - a.lse[r]);
        if (c0 + j == a.labels[r]) g -= 1.0;
        g *= a.grad_scale;
        const float* w = a.w + (c0 + j) * a.d;
        float* dw = a.dw + (c0 + j) * a.d;
        if (a.bf16) {
          // bf16 compute: the backward products read dlogits, w and h rounded to bf16
          const double gb = round_bf16(static_cast<float>(g));
          for (int64_t i = 0; i < a.d; ++i) {
            dh[i] += gb * round_bf16(w[i]);
            dw[i] += static_cast<float>(gb * round_bf16(h[i]));
          }
          continue;
        }
        for (int64_t i = 0; i < a.d; ++i) {
          dh[i] += g * w[i];
          dw[i] += static_cast<float>(g * h[i]);
        }
      }
    }
    for (int64_t i = 0; i < a.d; ++i) a.dh[r * a.d + i] = static_cast<float>(dh[i]);
  }
  return -1;
}

// One row at a time: logits once, lse and loss, then the row's dlogits into dh (overwritten) and dw (+=).
int64_t ce_fused_sweep(const CrossEntropyArgs& a) {
  if (int64_t bad = first_bad_label(a); bad >= 0) return bad;
  std::vector<double> logits(a.V), dh(a.d);
  double loss_sum = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < a.N; ++r) {
    chunk_logits(a, r, 0, a.V, logits);
    double m = -std::numeric_limits<double>::infinity(), l = 0;
    for (int64_t j = 0; j < a.V; ++j) m = logits[j] > m ? logits[j] : m;
    for (int64_t j = 0; j < a.V; ++j) l += std::exp(logits[j] - m);
    const double lse = m + std::log(l);
    a.lse[r] = static_cast<float>(lse);
    const int32_t y = a.labels[r];
    if (a.row_loss) a.row_loss[r] = y == kIgnore ? 0.f : static_cast<float>(lse - logits[y]);
    if (a.dh) std::memset(a.dh + r * a.d, 0, sizeof(float) * a.d);
    if (y == kIgnore) continue;
    loss_sum += lse - logits[y];
    ++count;
    const float* h = a.h + r * a.d;
    for (int64_t i = 0; i < a.d; ++i) dh[i] = 0;
    for (int64_t j = 0; j < a.V; ++j) {
      double g = std::exp(logits[j] - a.lse[r]);  // the stored fp32 lse, as ce_fused_bwd reads it
      if (j == y) g -= 1.0;
      g *= a.grad_scale;
      // bf16 compute: the backward products read dlogits, w and h rounded to bf16
      if (a.bf16) g = round_bf16(static_cast<float>(g));
      const float* w = a.w + j * a.d;
      float* dw = a.dw ? a.dw + j * a.d : nullptr;
      for (int64_t i = 0; i < a.d; ++i) {
        const double wi = a.bf16 ? round_bf16(w[i]) : w[i];
        const double hi = a.bf16 ? round_bf16(h[i]) : h[i];
        dh[i] += g * wi;
        if (dw) dw[i] += static_cast<float>(g * hi);
      }
    }
    if (a.dh)
      for (int64_t i = 0; i < a.d; ++i) a.dh[r * a.d + i] = static_cast<float>(dh[i]);
  }
  *a.loss_sum = loss_sum;
  *a.count = count;
  return -1;
}

}  // namespace sft::naive
