// Reductions: the naive references of reduce (sum/mean/max over an axis), softmax / log-softmax and their
// backward, sumsq; and the plain kernels argmax and top-k.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.h"

namespace sft {

namespace {

// Max ordering shared by every max-like kernel: NaN beats any number (torch propagates NaN), and the
// first occurrence wins among equals.
inline bool beats(float v, float best) { return v > best || (v != v && best == best); }

}  // namespace

namespace naive {

// x (outer, dim, inner) -> y (outer, inner); idx (outer, inner) gets the argmax for kMax when given.
void reduce(int op, const float* x, float* y, int32_t* idx, int64_t outer, int64_t dim, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const float* p = x + o * dim * inner + i;
      if (op == kMax) {
        float best = -INFINITY;
        int32_t at = 0;
        for (int64_t d = 0; d < dim; ++d) {
          if (beats(p[d * inner], best)) {
            best = p[d * inner];
            at = static_cast<int32_t>(d);
          }
        }
        y[o * inner + i] = best;
        if (idx) idx[o * inner + i] = at;
      } else {
        float s = 0.f;
        for (int64_t d = 0; d < dim; ++d) s += p[d * inner];
        y[o * inner + i] = op == kMean ? s / static_cast<float>(dim) : s;
      }
    }
  }
}

// y = softmax(x) or log_softmax(x) over each row of (rows, cols).
void softmax(const float* x, float* y, int64_t rows, int64_t cols, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, xr[c]);
    float s = 0.f;
    for (int64_t c = 0; c < cols; ++c) s += std::exp(xr[c] - m);
    if (log) {
      float ls = std::log(s);
      for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) - ls;
    } else {
      for (int64_t c = 0; c < cols; ++c) yr[c] = std::exp(xr[c] - m) / s;
    }
  }
}

// softmax: dx = y * (dy - sum(dy * y)); log-softmax: dx = dy - exp(y) * sum(dy).
void softmax_bwd(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* gr = dy + r * cols;
    float* dr = dx + r * cols;
    float s = 0.f;
    if (log) {
      for (int64_t c = 0; c < cols; ++c) s += gr[c];
      for (int64_t c = 0; c < cols; ++c) dr[c] = gr[c] - std::exp(yr[c]) * s;
    } else {
      for (int64_t c = 0; c < cols; ++c) s += gr[c] * yr[c];
      for (int64_t c = 0; c < cols; ++c) dr[c] = yr[c] * (gr[c] - s);
    }
  }
}

double sumsq(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}

}  // namespace naive

namespace k {

void argmax(const float* x, int32_t* out, int64_t rows, int64_t cols) {
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
  parallel_for_grain(rows, grain, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const float* p = x + r * cols;
      float best = -INFINITY;
      int32_t at = 0;
      for (int64_t c = 0; c < cols; ++c) {
        if (beats(p[c], best)) {
          best = p[c];
          at = static_cast<int32_t>(c);
        }
      }
      out[r] = at;
    }
  });
}

void topk(const float* x, float* values, int32_t* indices, int64_t rows, int64_t cols, int64_t k) {
  if (rows == 0 || k == 0) return;
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
  // One scratch index array per part, made before the parallel region (workers must not throw).
  std::vector<std::vector<int32_t>> scratch(static_cast<size_t>(num_threads()), std::vector<int32_t>(cols));
  parallel_for_grain(rows, grain, [&](int64_t begin, int64_t end, int part) {
    std::vector<int32_t>& order = scratch[static_cast<size_t>(part)];
    for (int64_t r = begin; r < end; ++r) {
      const float* p = x + r * cols;
      for (int64_t c = 0; c < cols; ++c) order[c] = static_cast<int32_t>(c);
      // Descending by value (NaN largest, as torch.topk), lower index first on ties: a strict weak order.
      auto before = [p](int32_t a, int32_t b) {
        float va = p[a], vb = p[b];
        if (va != va || vb != vb) return (va != va && vb == vb) || (va != va && vb != vb && a < b);
        return va > vb || (va == vb && a < b);
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      for (int64_t j = 0; j < k; ++j) {
        values[r * k + j] = p[order[j]];
        indices[r * k + j] = order[j];
      }
    }
  });
}

}  // namespace k

}  // namespace sft
