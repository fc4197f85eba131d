// Naive reference SwiGLU: out = silu(gate) * up, and its backward.
#include <cmath>

#include "kernels/kernels.h"

namespace sft::naive {

void swiglu_fwd(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

// silu'(g) = sig(g) * (1 + g * (1 - sig(g))); dgate = dout * up * silu'(g); dup = dout * silu(g).
void swiglu_bwd(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double g = gate[i];
    double sig = 1.0 / (1.0 + std::exp(-g));
    double silu = g * sig;
    dgate[i] = static_cast<float>(dout[i] * up[i] * sig * (1.0 + g * (1.0 - sig)));
    dup[i] = static_cast<float>(dout[i] * silu);
  }
}

}  // namespace sft::naive
