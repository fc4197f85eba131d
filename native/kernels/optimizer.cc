// The naive reference of the fused AdamW step, in PyTorch's arithmetic order (torch.optim.AdamW, single-tensor).
#include <cmath>

#include "kernels/kernels.h"

namespace sft {

namespace naive {

// Per element, as torch does it in fp32 with its scalars prepared in double:
//   g = g * grad_scale; p = p * (1 - lr*wd); m = m*beta1 + (1-beta1)*g; v = v*beta2 + (1-beta2)*g*g;
//   p = p + (-lr/bc1) * (m / (sqrt(v) / sqrt(bc2) + eps)).
void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a) {
  const float decay = static_cast<float>(1.0 - static_cast<double>(a.lr) * a.weight_decay);
  const float one_b1 = static_cast<float>(1.0 - a.beta1), one_b2 = static_cast<float>(1.0 - a.beta2);
  const float neg_step = static_cast<float>(-static_cast<double>(a.lr) / a.bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(static_cast<double>(a.bc2)));
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] * a.grad_scale;
    float pi = p[i] * decay;
    float mi = m[i] * a.beta1 + one_b1 * gi;
    float vi = v[i] * a.beta2 + (one_b2 * gi) * gi;
    float denom = std::sqrt(vi) / bc2_sqrt + a.eps;
    p[i] = pi + neg_step * (mi / denom);
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace naive

}  // namespace sft
