// Naive reference attention (forward and backward): one query row at a time with its full score row,
// double accumulators, single-threaded. Same semantics as the tiled SIMD kernel in simd/attention.cc.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

namespace sft::naive {

namespace {

// Whether query t (batch b) may attend key s.
bool visible(const AttentionArgs& a, int64_t b, int64_t t, int64_t s) {
  if (a.causal && s > t + a.q_offset) return false;
  if (a.window > 0 && s <= t + a.q_offset - a.window) return false;
  if (a.q_seg && a.q_seg[b * a.T + t] != a.k_seg[b * a.S + s]) return false;
  return true;
}

// Scaled scores of query (b, t, h) against every key; masked keys get -inf. Returns their max.
double score_row(const AttentionArgs& a, int64_t b, int64_t t, int64_t h, std::vector<double>& sc) {
  const int64_t kvh = h / (a.Hq / a.Hkv);
  const float* q = a.q + ((b * a.T + t) * a.Hq + h) * a.D;
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t s = 0; s < a.S; ++s) {
    if (!visible(a, b, t, s)) {
      sc[s] = -std::numeric_limits<double>::infinity();
      continue;
    }
    const float* k = a.k + b * a.kv_bstride + (s * a.Hkv + kvh) * a.D;
    double dot = 0;
    for (int64_t d = 0; d < a.D; ++d) dot += static_cast<double>(q[d]) * k[d];
    sc[s] = dot * a.scale;
    if (sc[s] > mx) mx = sc[s];
  }
  return mx;
}

}  // namespace

void attention_fwd(const AttentionArgs& a) {
  std::vector<double> sc(a.S), acc(a.D);
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t t = 0; t < a.T; ++t)
      for (int64_t h = 0; h < a.Hq; ++h) {
        const int64_t kvh = h / (a.Hq / a.Hkv);
        float* out = a.out + ((b * a.T + t) * a.Hq + h) * a.D;
        float* lse = a.lse + (b * a.Hq + h) * a.T + t;
        double mx = score_row(a, b, t, h, sc);
        if (mx == -std::numeric_limits<double>::infinity()) {
          for (int64_t d = 0; d < a.D; ++d) out[d] = 0.f;
          *lse = -std::numeric_limits<float>::infinity();
          continue;
        }
        double sum = 0;
        for (int64_t d = 0; d < a.D; ++d) acc[d] = 0;
        for (int64_t s = 0; s < a.S; ++s) {
          if (sc[s] == -std::numeric_limits<double>::infinity()) continue;
          double p = std::exp(sc[s] - mx);
          sum += p;
          const float* v = a.v + b * a.kv_bstride + (s * a.Hkv + kvh) * a.D;
          for (int64_t d = 0; d < a.D; ++d) acc[d] += p * v[d];
        }
        for (int64_t d = 0; d < a.D; ++d) out[d] = static_cast<float>(acc[d] / sum);
        *lse = static_cast<float>(mx + std::log(sum));
      }
}

// p = exp(score - lse); dp_s = dout . v_s; ds = p * (dp - sum_s p dp) * scale;
// dq = sum_s ds k_s; dk_s += ds q; dv_s += p dout.
void attention_bwd(const AttentionArgs& a) {
  std::memset(a.dq, 0, sizeof(float) * a.B * a.T * a.Hq * a.D);
  std::memset(a.dk, 0, sizeof(float) * a.B * a.S * a.Hkv * a.D);
  std::memset(a.dv, 0, sizeof(float) * a.B * a.S * a.Hkv * a.D);
  std::vector<double> sc(a.S), p(a.S), dp(a.S);
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t t = 0; t < a.T; ++t)
      for (int64_t h = 0; h < a.Hq; ++h) {
        const int64_t kvh = h / (a.Hq / a.Hkv);
        const float lse = a.lse[(b * a.Hq + h) * a.T + t];
        if (lse == -std::numeric_limits<float>::infinity()) continue;  // saw no key: no gradient
        const float* q = a.q + ((b * a.T + t) * a.Hq + h) * a.D;
        const float* dout = a.dout + ((b * a.T + t) * a.Hq + h) * a.D;
        float* dq = a.dq + ((b * a.T + t) * a.Hq + h) * a.D;
        score_row(a, b, t, h, sc);
        double pdp = 0;
        for (int64_t s = 0; s < a.S; ++s) {
          p[s] = sc[s] == -std::numeric_limits<double>::infinity() ? 0.0 : std::exp(sc[s] - lse);
          const float* v = a.v + b * a.kv_bstride + (s * a.Hkv + kvh) * a.D;
          double dot = 0;
          for (int64_t d = 0; d < a.D; ++d) dot += static_cast<double>(dout[d]) * v[d];
          dp[s] = dot;
          pdp += p[s] * dot;
        }
        for (int64_t s = 0; s < a.S; ++s) {
          if (p[s] == 0.0) continue;
          double ds = p[s] * (dp[s] - pdp) * a.scale;
          const float* k = a.k + b * a.kv_bstride + (s * a.Hkv + kvh) * a.D;
          float* dk = a.dk + ((b * a.S + s) * a.Hkv + kvh) * a.D;
          float* dv = a.dv + ((b * a.S + s) * a.Hkv + kvh) * a.D;
          for (int64_t d = 0; d < a.D; ++d) {
            dq[d] += static_cast<float>(ds * k[d]);
            dk[d] += static_cast<float>(ds * q[d]);
            dv[d] += static_cast<float>(p[s] * dout[d]);
          }
        }
      }
}

}  // namespace sft::naive
