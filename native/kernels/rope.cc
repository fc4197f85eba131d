// Naive reference RoPE (HF rotate_half, partial rotary) and its inverse rotation for backward.
#include "kernels/kernels.h"

namespace sft::naive {

// x, y (rows, H, D); cos, sin (pos_count, rot_dim / 2); positions (rows).
// Forward: y1 = x1 cos - x2 sin, y2 = x2 cos + x1 sin for the pairs (i, i + rot_dim/2), i < rot_dim/2.
// Backward (x = dy, y = dx): the transpose, dx1 = dy1 cos + dy2 sin, dx2 = dy2 cos - dy1 sin.
// Dims from rot_dim on are copied. x may equal y.
int64_t rope(const RopeArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r)
    if (a.positions[r] < 0 || a.positions[r] >= a.pos_count) return r;
  const int64_t half = a.rot_dim / 2;
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* c = a.cos + static_cast<int64_t>(a.positions[r]) * half;
    const float* s = a.sin + static_cast<int64_t>(a.positions[r]) * half;
    for (int64_t h = 0; h < a.H; ++h) {
      const float* x = a.x + (r * a.H + h) * a.D;
      float* y = a.y + (r * a.H + h) * a.D;
      for (int64_t i = 0; i < half; ++i) {
        float x1 = x[i], x2 = x[i + half];
        if (!a.backward) {
          y[i] = x1 * c[i] - x2 * s[i];
          y[i + half] = x2 * c[i] + x1 * s[i];
        } else {
          y[i] = x1 * c[i] + x2 * s[i];
          y[i + half] = x2 * c[i] - x1 * s[i];
        }
      }
      for (int64_t i = a.rot_dim; i < a.D; ++i) y[i] = x[i];
    }
  }
  return -1;
}

}  // namespace sft::naive
