// Glue for the gemm kernel family: reads and validates every size, leading dimension and batch stride,
// and bounds-checks the exact extent of A, B and C before the kernel runs.
#include <string>

#include "glue/args.h"
#include "kernels/kernels.h"

namespace sft::glue {

namespace {

constexpr const char* kOp = "gemm";
// Largest extent (elements) accepted; keeps byte counts far from int64 overflow.
constexpr int64_t kMaxElems = int64_t(1) << 60;

// a * b + c with overflow reported as -1 (all inputs are non-negative).
int64_t mul_add(int64_t a, int64_t b, int64_t c) {
  int64_t prod = 0, sum = 0;
  if (__builtin_mul_overflow(a, b, &prod) || __builtin_add_overflow(prod, c, &sum) || sum > kMaxElems) return -1;
  return sum;
}

// Elements spanned by `batch` matrices of rows x cols with leading dimension ld, `stride` apart:
// (batch - 1) * stride + (rows - 1) * ld + cols, or 0 when any of them is empty. -1 on overflow.
int64_t extent(int64_t batch, int64_t stride, int64_t rows, int64_t ld, int64_t cols) {
  if (batch == 0 || rows == 0 || cols == 0) return 0;
  int64_t one = mul_add(rows - 1, ld, cols);
  if (one < 0) return -1;
  return mul_add(batch - 1, stride, one);
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GemmArgs g{};
  g.trans_a = flag(info, 0, kOp, "transA");
  g.trans_b = flag(info, 1, kOp, "transB");
  g.M = dim(info, 2, kOp, "M");
  g.N = dim(info, 3, kOp, "N");
  g.K = dim(info, 4, kOp, "K");
  g.alpha = static_cast<float>(f64(info, 5, kOp, "alpha"));
  g.lda = dim(info, 8, kOp, "lda");
  g.ldb = dim(info, 11, kOp, "ldb");
  g.beta = static_cast<float>(f64(info, 12, kOp, "beta"));
  g.ldc = dim(info, 15, kOp, "ldc");
  g.batch = dim(info, 16, kOp, "batch");
  g.stride_a = dim(info, 17, kOp, "strideA");
  g.stride_b = dim(info, 18, kOp, "strideB");
  g.stride_c = dim(info, 19, kOp, "strideC");
  g.bf16 = optional_flag(info, 20, kOp, "bf16");

  // Stored shapes: A is (M, K), or (K, M) with transA; B is (K, N), or (N, K) with transB; C is (M, N).
  const int64_t a_rows = g.trans_a ? g.K : g.M, a_cols = g.trans_a ? g.M : g.K;
  const int64_t b_rows = g.trans_b ? g.N : g.K, b_cols = g.trans_b ? g.K : g.N;
  const std::string shapes = "M=" + std::to_string(g.M) + " N=" + std::to_string(g.N) + " K=" + std::to_string(g.K) +
                             " transA=" + (g.trans_a ? "true" : "false") + " transB=" + (g.trans_b ? "true" : "false") +
                             " batch=" + std::to_string(g.batch) + "; stored A (" + std::to_string(a_rows) + ", " +
                             std::to_string(a_cols) + ") lda=" + std::to_string(g.lda) + ", B (" + std::to_string(b_rows) +
                             ", " + std::to_string(b_cols) + ") ldb=" + std::to_string(g.ldb) + ", C (" +
                             std::to_string(g.M) + ", " + std::to_string(g.N) + ") ldc=" + std::to_string(g.ldc);
  auto check_ld = [&](const char* name, int64_t ld, int64_t cols) {
    // A leading dimension below the row length would make rows overlap; 1 is the floor for empty rows.
    if (ld < (cols > 1 ? cols : 1))
      fail(env, kOp, std::string(name) + " must be >= " + std::to_string(cols > 1 ? cols : 1) + " (the stored row length), got " +
                         std::to_string(ld) + " [" + shapes + "]");
  };
  check_ld("lda", g.lda, a_cols);
  check_ld("ldb", g.ldb, b_cols);
  check_ld("ldc", g.ldc, g.N);

  const int64_t a_elems = extent(g.batch, g.stride_a, a_rows, g.lda, a_cols);
  const int64_t b_elems = extent(g.batch, g.stride_b, b_rows, g.ldb, b_cols);
  const int64_t c_elems = extent(g.batch, g.stride_c, g.M, g.ldc, g.N);
  if (a_elems < 0 || b_elems < 0 || c_elems < 0) fail(env, kOp, "buffer extent overflows [" + shapes + "]");

  // Name the shapes in buffer errors too (buf's own message names only the buffer).
  try {
    g.A = buf<float>(info, 6, kOp, "A", a_elems, false);
    g.B = buf<float>(info, 9, kOp, "B", b_elems, false);
    g.C = buf<float>(info, 13, kOp, "C", c_elems, true);
  } catch (const Napi::Error& e) {
    fail(env, kOp, e.Message().substr(std::string(kOp).size() + 2) + " [" + shapes + "; strides A=" +
                       std::to_string(g.stride_a) + " B=" + std::to_string(g.stride_b) + " C=" + std::to_string(g.stride_c) + "]");
  }
  try {
    k::gemm(g);
  } catch (const std::exception& e) {
    fail(env, kOp, std::string(e.what()) + " [" + shapes + "]");
  }
  return env.Undefined();
}

}  // namespace

void register_gemm(Napi::Env env, Napi::Object exports) { exports.Set("gemm", Napi::Function::New(env, Gemm)); }

}  // namespace sft::glue
