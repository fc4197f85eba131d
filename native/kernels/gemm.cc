// Naive reference GEMM: the plain triple loop that the SIMD paths are tested against, and the path
// used on CPUs without AVX2. Same contract as GemmArgs (row-major, all transposes, batched, alpha/beta,
// bf16 compute).
#include "kernels/kernels.h"

namespace sft::naive {

void gemm(const GemmArgs& g) {
  for (int64_t b = 0; b < g.batch; ++b) {
    const float* A = g.A + b * g.stride_a;   // stored (M, K), or (K, M) when trans_a
    const float* B = g.B + b * g.stride_b;   // stored (K, N), or (N, K) when trans_b
    float* C = g.C + b * g.stride_c;         // (M, N)
    for (int64_t i = 0; i < g.M; ++i) {
      for (int64_t j = 0; j < g.N; ++j) {
        float* c = C + i * g.ldc + j;
        // As in BLAS, alpha == 0 (or K == 0) leaves only beta * C and reads neither A nor B.
        float acc = 0.f;
        if (g.alpha != 0.f) {
          for (int64_t k = 0; k < g.K; ++k) {
            float a = g.trans_a ? A[k * g.lda + i] : A[i * g.lda + k];
            float bk = g.trans_b ? B[j * g.ldb + k] : B[k * g.ldb + j];
            if (g.bf16) {
              a = round_bf16(a);
              bk = round_bf16(bk);
            }
            acc += a * bk;
          }
        }
        // beta == 0 overwrites: C is never read, so NaN/Inf already in C do not propagate.
        *c = g.beta == 0.f ? g.alpha * acc : g.alpha * acc + g.beta * *c;
      }
    }
  }
}

}  // namespace sft::naive
