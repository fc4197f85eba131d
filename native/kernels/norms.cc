// Naive reference RMSNorm and LayerNorm (forward and backward): plain loops with double accumulators,
// single-threaded, the yardstick the SIMD versions in simd/norms.cc are tested against.
#include <cmath>
#include <vector>

#include "kernels/kernels.h"

namespace sft::naive {

// y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps)   (HF LlamaRMSNorm)
// x, y (rows, dim); w (dim); rstd (rows)
void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    float rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    rstd[r] = rs;
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = w[i] * (xr[i] * rs);
  }
}

// dx = rstd * w * dy - x * rstd^3 * sum(w * dy * x) / dim;  dw += sum over rows of dy * x * rstd.
// dw may be null (frozen weight).
void rmsnorm_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                 int64_t rows, int64_t dim) {
  std::vector<double> dw_acc(dw ? dim : 0, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    double rs = rstd[r];
    double dot = 0;
    for (int64_t i = 0; i < dim; ++i) dot += static_cast<double>(w[i]) * dyr[i] * xr[i];
    double c = rs * rs * rs * dot / static_cast<double>(dim);
    for (int64_t i = 0; i < dim; ++i) dx[r * dim + i] = static_cast<float>(rs * w[i] * dyr[i] - c * xr[i]);
    if (dw)
      for (int64_t i = 0; i < dim; ++i) dw_acc[i] += static_cast<double>(dyr[i]) * xr[i] * rs;
  }
  if (dw)
    for (int64_t i = 0; i < dim; ++i) dw[i] += static_cast<float>(dw_acc[i]);
}

// y = (x - mean) * rstd * w + b with the biased variance (torch.nn.LayerNorm); w, b may be null.
// x, y (rows, dim); w, b (dim); mean, rstd (rows)
void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                   int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double s = 0;
    for (int64_t i = 0; i < dim; ++i) s += xr[i];
    double mu = s / static_cast<double>(dim);
    double var = 0;
    for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mu) * (xr[i] - mu);
    var /= static_cast<double>(dim);
    double rs = 1.0 / std::sqrt(var + eps);
    mean[r] = static_cast<float>(mu);
    rstd[r] = static_cast<float>(rs);
    for (int64_t i = 0; i < dim; ++i) {
      double v = (xr[i] - mu) * rs;
      if (w) v *= w[i];
      if (b) v += b[i];
      y[r * dim + i] = static_cast<float>(v);
    }
  }
}

// With xhat = (x - mean) * rstd and g = dy * w:  dx = rstd * (g - mean(g) - xhat * mean(g * xhat));
// dw += sum over rows of dy * xhat; db += sum over rows of dy. w, dw, db may be null.
void layernorm_bwd(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                   float* dw, float* db, int64_t rows, int64_t dim) {
  std::vector<double> dw_acc(dim, 0.0), db_acc(dim, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    double mu = mean[r], rs = rstd[r];
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < dim; ++i) {
      double xhat = (xr[i] - mu) * rs;
      double g = w ? static_cast<double>(dyr[i]) * w[i] : dyr[i];
      sg += g;
      sgx += g * xhat;
      dw_acc[i] += dyr[i] * xhat;
      db_acc[i] += dyr[i];
    }
    sg /= static_cast<double>(dim);
    sgx /= static_cast<double>(dim);
    for (int64_t i = 0; i < dim; ++i) {
      double xhat = (xr[i] - mu) * rs;
      double g = w ? static_cast<double>(dyr[i]) * w[i] : dyr[i];
      dx[r * dim + i] = static_cast<float>(rs * (g - sg - xhat * sgx));
    }
  }
  for (int64_t i = 0; i < dim; ++i) {
    if (dw) dw[i] += static_cast<float>(dw_acc[i]);
    if (db) db[i] += static_cast<float>(db_acc[i]);
  }
}

}  // namespace sft::naive
