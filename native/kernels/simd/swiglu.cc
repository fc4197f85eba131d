// SIMD SwiGLU: out = silu(gate) * up with silu(g) = g / (1 + exp(-g)), and its backward.
#include "kernels/kernels.h"
#include "kernels/simd/nn_util.h"

namespace sft {
namespace SFT_NS {

using namespace simd;

namespace {

inline VF sigmoid(VF g) { return div(set1(1.f), add(set1(1.f), exp(sub(zero(), g)))); }

}  // namespace

void swiglu_fwd(const float* gate, const float* up, float* out, int64_t n) {
  parallel_for_grain(n, 16384, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; i += W) {
      const int64_t len = i1 - i < W ? i1 - i : W;
      VF g = load_partial(gate + i, len), u = load_partial(up + i, len);
      store_partial(out + i, mul(mul(g, sigmoid(g)), u), len);
    }
  });
}

void swiglu_bwd(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n) {
  parallel_for_grain(n, 16384, [&](int64_t i0, int64_t i1, int) {
    const VF one = set1(1.f);
    for (int64_t i = i0; i < i1; i += W) {
      const int64_t len = i1 - i < W ? i1 - i : W;
      VF g = load_partial(gate + i, len), u = load_partial(up + i, len), d = load_partial(dout + i, len);
      VF sig = sigmoid(g);
      VF silu = mul(g, sig);
      VF dsilu = mul(sig, fmadd(g, sub(one, sig), one));   // sig * (1 + g (1 - sig))
      store_partial(dgate + i, mul(mul(d, u), dsilu), len);
      store_partial(dup + i, mul(d, silu), len);
    }
  });
}

}  // namespace SFT_NS
}  // namespace sft
