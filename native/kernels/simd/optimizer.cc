// SIMD fused AdamW step (compiled per ISA into SFT_NS). The same unfused multiplies and adds, in the same
// order, as the naive reference (torch's order), so every path gives identical bits.

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/simd/simd.h"

namespace sft {
namespace SFT_NS {

namespace {

using namespace simd;

constexpr int64_t kGrain = 16384;

// Materialises a product so it is rounded on its own: GCC otherwise fuses a multiply and the add that
// follows into one FMA (a single rounding), and the step would no longer match torch's order or naive.
inline VF rounded(VF a) {
  __asm__("" : "+v"(a.v));
  return a;
}

}  // namespace

void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a) {
  const float decay = static_cast<float>(1.0 - static_cast<double>(a.lr) * a.weight_decay);
  const float one_b1 = static_cast<float>(1.0 - a.beta1), one_b2 = static_cast<float>(1.0 - a.beta2);
  const float neg_step = static_cast<float>(-static_cast<double>(a.lr) / a.bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(static_cast<double>(a.bc2)));
  const VF vdecay = set1(decay), vb1 = set1(a.beta1), vb2 = set1(a.beta2), v1b1 = set1(one_b1), v1b2 = set1(one_b2);
  const VF vstep = set1(neg_step), vbc2 = set1(bc2_sqrt), veps = set1(a.eps), vgs = set1(a.grad_scale);
  // One vector of the update; the tail uses the same code on masked loads.
  auto step = [&](VF pv, VF gv, VF mv, VF vv, VF* po, VF* mo, VF* vo) {
    gv = rounded(mul(gv, vgs));
    pv = rounded(mul(pv, vdecay));
    mv = add(rounded(mul(mv, vb1)), rounded(mul(v1b1, gv)));
    vv = add(rounded(mul(vv, vb2)), rounded(mul(rounded(mul(v1b2, gv)), gv)));
    VF denom = add(div(simd::sqrt(vv), vbc2), veps);
    *po = add(pv, rounded(mul(vstep, div(mv, denom))));
    *mo = mv;
    *vo = vv;
  };
  parallel_for_grain(n, kGrain, [&](int64_t begin, int64_t end, int) {
    int64_t i = begin;
    VF po, mo, vo;
    for (; i + W <= end; i += W) {
      step(load(p + i), load(g + i), load(m + i), load(v + i), &po, &mo, &vo);
      store(p + i, po);
      store(m + i, mo);
      store(v + i, vo);
    }
    if (i < end) {
      int64_t r = end - i;
      step(load_partial(p + i, r), load_partial(g + i, r), load_partial(m + i, r), load_partial(v + i, r), &po, &mo, &vo);
      store_partial(p + i, po, r);
      store_partial(m + i, mo, r);
      store_partial(v + i, vo, r);
    }
  });
}

}  // namespace SFT_NS
}  // namespace sft
