// SIMD RMSNorm and LayerNorm, forward and backward. Rows are split statically across threads; the weight
// gradients are reduced in a second pass split by columns, so every dw/db element is one thread's fixed-order
// sum over all rows: deterministic, without atomics, and independent of the thread count.
#include <cmath>

#include "kernels/kernels.h"
#include "kernels/simd/nn_util.h"

namespace sft {
namespace SFT_NS {

using namespace simd;
using nnk::row_grain;

namespace {

float row_sumsq(const float* x, int64_t n) { return nnk::dot(x, x, n); }

float sum(const float* x, int64_t n) {
  VF s0 = zero(), s1 = zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = add(s0, load(x + i));
    s1 = add(s1, load(x + i + W));
  }
  for (; i + W <= n; i += W) s0 = add(s0, load(x + i));
  if (i < n) s1 = add(s1, load_partial(x + i, n - i));
  return reduce_add(add(s0, s1));
}

// Column pass for weight gradients: for each column i in the group of up to 4 vectors starting at c,
// gw[i] += sum_r dy[r,i] * xhat[r,i] and gb[i] += sum_r dy[r,i], with xhat = (x - mean[r]) * rstd[r]
// (mean null: xhat = x * rstd). gw or gb may be null. Every column uses the same vector arithmetic
// whatever its lane, so a column's result does not depend on how columns are split.
void column_grads(const float* x, const float* dy, const float* mean, const float* rstd, float* gw, float* gb,
                  int64_t rows, int64_t dim, int64_t c) {
  const int64_t len = dim - c < 4 * W ? dim - c : 4 * W;
  const int nv = static_cast<int>((len + W - 1) / W);
  VF aw[4] = {zero(), zero(), zero(), zero()}, ab[4] = {zero(), zero(), zero(), zero()};
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim + c;
    const float* dyr = dy + r * dim + c;
    const VF rs = set1(rstd[r]), mu = set1(mean ? mean[r] : 0.f);
    for (int v = 0; v < nv; ++v) {
      const int64_t n = len - v * W < W ? len - v * W : W;
      VF xv = n == W ? load(xr + v * W) : load_partial(xr + v * W, n);
      VF dv = n == W ? load(dyr + v * W) : load_partial(dyr + v * W, n);
      VF xhat = mean ? mul(sub(xv, mu), rs) : mul(xv, rs);
      aw[v] = fmadd(dv, xhat, aw[v]);
      ab[v] = add(ab[v], dv);
    }
  }
  for (int v = 0; v < nv; ++v) {
    const int64_t n = len - v * W < W ? len - v * W : W;
    if (gw) store_partial(gw + c + v * W, add(load_partial(gw + c + v * W, n), aw[v]), n);
    if (gb) store_partial(gb + c + v * W, add(load_partial(gb + c + v * W, n), ab[v]), n);
  }
}

void weight_grads(const float* x, const float* dy, const float* mean, const float* rstd, float* gw, float* gb,
                  int64_t rows, int64_t dim) {
  if (!gw && !gb) return;
  const int64_t groups = (dim + 4 * W - 1) / (4 * W);
  parallel_for_grain(groups, row_grain(rows * 4 * W), [&](int64_t g0, int64_t g1, int) {
    for (int64_t g = g0; g < g1; ++g) column_grads(x, dy, mean, rstd, gw, gb, rows, dim, g * 4 * W);
  });
}

}  // namespace

void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  parallel_for_grain(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      const float rs = 1.f / std::sqrt(row_sumsq(xr, dim) / static_cast<float>(dim) + eps);
      rstd[r] = rs;
      const VF vr = set1(rs);
      int64_t i = 0;
      for (; i + W <= dim; i += W) store(yr + i, mul(mul(load(xr + i), vr), load(w + i)));
      if (i < dim) store_partial(yr + i, mul(mul(load_partial(xr + i, dim - i), vr), load_partial(w + i, dim - i)), dim - i);
    }
  });
}

void rmsnorm_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                 int64_t rows, int64_t dim) {
  parallel_for_grain(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      const float rs = rstd[r];
      // sum_i w_i dy_i x_i
      VF s0 = zero(), s1 = zero();
      int64_t i = 0;
      for (; i + W <= dim; i += W) s0 = fmadd(mul(load(w + i), load(dyr + i)), load(xr + i), s0);
      if (i < dim) s1 = mul(mul(load_partial(w + i, dim - i), load_partial(dyr + i, dim - i)), load_partial(xr + i, dim - i));
      const float c = rs * rs * rs * reduce_add(add(s0, s1)) / static_cast<float>(dim);
      const VF vr = set1(rs), vc = set1(c);
      for (i = 0; i + W <= dim; i += W)
        store(dxr + i, fnmadd(vc, load(xr + i), mul(vr, mul(load(w + i), load(dyr + i)))));
      if (i < dim) {
        const int64_t n = dim - i;
        store_partial(dxr + i, fnmadd(vc, load_partial(xr + i, n), mul(vr, mul(load_partial(w + i, n), load_partial(dyr + i, n)))), n);
      }
    }
  });
  weight_grads(x, dy, nullptr, rstd, dw, nullptr, rows, dim);
}

void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                   int64_t dim, float eps) {
  parallel_for_grain(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      const float mu = sum(xr, dim) / static_cast<float>(dim);
      const VF vmu = set1(mu);
      VF s0 = zero(), s1 = zero();
      int64_t i = 0;
      for (; i + W <= dim; i += W) {
        VF d = sub(load(xr + i), vmu);
        s0 = fmadd(d, d, s0);
      }
      if (i < dim) {
        // masked-out lanes read mu, so they add 0
        VF d = sub(load_partial(xr + i, dim - i, mu), vmu);
        s1 = mul(d, d);
      }
      const float rs = 1.f / std::sqrt(reduce_add(add(s0, s1)) / static_cast<float>(dim) + eps);
      mean[r] = mu;
      rstd[r] = rs;
      const VF vr = set1(rs);
      for (i = 0; i < dim; i += W) {
        const int64_t n = dim - i < W ? dim - i : W;
        VF v = mul(sub(load_partial(xr + i, n), vmu), vr);
        if (w) v = mul(v, load_partial(w + i, n));
        if (b) v = add(v, load_partial(b + i, n));
        store_partial(yr + i, v, n);
      }
    }
  });
}

void layernorm_bwd(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                   float* dw, float* db, int64_t rows, int64_t dim) {
  parallel_for_grain(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      const VF vmu = set1(mean[r]), vr = set1(rstd[r]);
      VF sg = zero(), sgx = zero();
      for (int64_t i = 0; i < dim; i += W) {
        const int64_t n = dim - i < W ? dim - i : W;
        VF xhat = mul(sub(load_partial(xr + i, n), vmu), vr);
        VF g = load_partial(dyr + i, n);
        if (w) g = mul(g, load_partial(w + i, n));
        sg = add(sg, g);
        sgx = fmadd(g, xhat, sgx);
      }
      // masked lanes: g = 0, so both sums ignore them
      const VF a = set1(reduce_add(sg) / static_cast<float>(dim));
      const VF bb = set1(reduce_add(sgx) / static_cast<float>(dim));
      for (int64_t i = 0; i < dim; i += W) {
        const int64_t n = dim - i < W ? dim - i : W;
        VF xhat = mul(sub(load_partial(xr + i, n), vmu), vr);
        VF g = load_partial(dyr + i, n);
        if (w) g = mul(g, load_partial(w + i, n));
        store_partial(dxr + i, mul(vr, fnmadd(xhat, bb, sub(g, a))), n);
      }
    }
  });
  weight_grads(x, dy, mean, rstd, dw, db, rows, dim);
}

}  // namespace SFT_NS
}  // namespace sft
