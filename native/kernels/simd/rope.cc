// SIMD RoPE (HF rotate_half, partial rotary) and its inverse for backward; rows split across threads.
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/simd/nn_util.h"

namespace sft {
namespace SFT_NS {

using namespace simd;

int64_t rope(const RopeArgs& a) {
  // Validate every position before writing anything.
  for (int64_t r = 0; r < a.rows; ++r)
    if (a.positions[r] < 0 || a.positions[r] >= a.pos_count) return r;
  const int64_t half = a.rot_dim / 2, H = a.H, D = a.D;
  parallel_for_grain(a.rows, nnk::row_grain(H * D), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* c = a.cos + static_cast<int64_t>(a.positions[r]) * half;
      const float* s = a.sin + static_cast<int64_t>(a.positions[r]) * half;
      for (int64_t h = 0; h < H; ++h) {
        const float* x = a.x + (r * H + h) * D;
        float* y = a.y + (r * H + h) * D;
        for (int64_t i = 0; i < half; i += W) {
          const int64_t n = half - i < W ? half - i : W;
          VF x1 = load_partial(x + i, n), x2 = load_partial(x + half + i, n);
          VF vc = load_partial(c + i, n), vs = load_partial(s + i, n);
          VF y1, y2;
          if (!a.backward) {
            y1 = fnmadd(x2, vs, mul(x1, vc));   // x1 cos - x2 sin
            y2 = fmadd(x1, vs, mul(x2, vc));    // x2 cos + x1 sin
          } else {
            y1 = fmadd(x2, vs, mul(x1, vc));    // dy1 cos + dy2 sin
            y2 = fnmadd(x1, vs, mul(x2, vc));   // dy2 cos - dy1 sin
          }
          store_partial(y + i, y1, n);
          store_partial(y + half + i, y2, n);
        }
        if (x != y && a.rot_dim < D) std::memcpy(y + a.rot_dim, x + a.rot_dim, sizeof(float) * (D - a.rot_dim));
      }
    }
  });
  return -1;
}

}  // namespace SFT_NS
}  // namespace sft
