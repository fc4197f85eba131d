// Every kernel of the addon: flat functions over raw pointers and sizes (row-major, fp32 compute).
// SIMD families exist three times (naive reference, AVX2+FMA, AVX-512) and are reached through the
// dispatching functions in sft::k; plain kernels have one implementation in sft::k.
#pragma once
#include <cstdint>
#include <utility>

#include "runtime.h"

namespace sft {

enum DType : int { kF32 = 0, kBF16 = 1, kF16 = 2, kI32 = 3 };

enum UnaryOp : int { kNeg = 0, kExp, kLog, kSqrt, kRsqrt, kSilu, kGelu, kScale, kPowScalar, kAddScalar, kSquare, kRelu, kUnaryCount };
enum BinaryOp : int { kAdd = 0, kSub, kMul, kDiv, kPow, kMaximum, kBinaryCount };
enum ReduceOp : int { kSum = 0, kMean, kMax, kReduceCount };

// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]; op(A) is (M, K), op(B) is (K, N), C is (M, N).
// beta == 0 overwrites C without reading it (NaNs in C do not propagate).
// bf16: mixed-precision compute. Every element of A and B is rounded to bf16 (round to nearest even, NaN
// stays NaN) as it is packed, products accumulate in fp32 and C stays fp32. A product of two bf16 values
// is exact in fp32, so every path (vdpbf16ps, or the fp32 micro-kernel over rounded panels) computes the
// same sums up to summation order and vdpbf16ps's flushing of denormals.
struct GemmArgs {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha;
  const float* A; int64_t lda;
  const float* B; int64_t ldb;
  float beta;
  float* C; int64_t ldc;
  int64_t batch, stride_a, stride_b, stride_c;
  bool bf16 = false;
};

// Causal (or full) attention with GQA. q (B,T,Hq,D) contiguous; k, v (B,S,Hkv,D) with batch stride
// kv_bstride elements (a KV cache may hold more rows than S); out (B,T,Hq,D); lse (B,Hq,T) natural-log
// sum-exp of the scaled scores, kept for backward. Query t sits at key position t + q_offset; with
// `causal` it sees keys s <= t + q_offset. With q_seg/k_seg (B,T)/(B,S) it sees only keys of its own
// segment (ids equal); rows with no visible key get zeros and lse = -inf.
// Backward: dq (B,T,Hq,D) overwritten, dk, dv (B,S,Hkv,D) contiguous, overwritten.
struct AttentionArgs {
  const float* q; const float* k; const float* v;
  float* out; float* lse;
  const float* dout; float* dq; float* dk; float* dv;
  const int32_t* q_seg; const int32_t* k_seg;
  int64_t B, T, S, Hq, Hkv, D, kv_bstride, q_offset;
  float scale;
  bool causal;
  // Sliding window (Mistral): when > 0, query t also sees only keys s > t + q_offset - window (the last
  // `window` positions up to its own). 0 = no window.
  int64_t window;
};

// HF rotate_half RoPE on x (rows, H, D): the first rot_dim dims of each head rotate, pairs (i, i + rot_dim/2);
// the rest are copied. cos/sin tables (pos_count, rot_dim/2); positions (rows) pick the table row.
// backward applies the inverse rotation (dx from dy). Returns -1, or the first row whose position is out of range.
struct RopeArgs {
  const float* x; float* y;
  const float* cos; const float* sin;
  const int32_t* positions;
  int64_t rows, H, D, rot_dim, pos_count;
  bool backward;
};

// Final projection fused with cross-entropy, in vocab chunks so (N, V) logits never exist at once.
// h (N, d), w (V, d) (HF lm_head layout), labels (N) with -100 = ignored.
// fwd: lse (N), row_loss (N, optional; 0 for ignored rows), *loss_sum = sum of token losses, *count = trained tokens.
// bwd: dh (N, d) overwritten, dw (V, d) accumulated (+=), both scaled by grad_scale (d loss / d loss_sum).
// sweep (training, one pass): everything fwd and bwd make, from one logits GEMM, chunked over blocks of
// row_block rows instead of vocab chunks (scratch row_block * V floats); dh (optional: null skips it)
// overwritten, dw (optional) accumulated. grad_scale must be known up front.
// Returns -1, or the first row whose label is out of range.
struct CrossEntropyArgs {
  const float* h; const float* w; const int32_t* labels;
  int64_t N, d, V, chunk;
  float* lse; float* row_loss; double* loss_sum; int64_t* count;
  float grad_scale; float* dh; float* dw;
  bool bf16 = false;  // the products run as bf16 GEMMs (GemmArgs::bf16)
  int64_t row_block = 0;  // sweep only
};

// PyTorch AdamW (decoupled weight decay): p -= lr*wd*p; m, v moments; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps).
// The gradient is multiplied by grad_scale first (clipping folded in).
struct AdamWArgs {
  float lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale;
};

#define SFT_SIMD_KERNELS(X)                                                                                   \
  X(void, gemm, (const GemmArgs& a))                                                                          \
  X(void, unary, (int op, const float* x, float* y, int64_t n, float alpha))                                  \
  X(void, unary_bwd, (int op, const float* x, const float* y, const float* dy, float* dx, int64_t n, float alpha)) \
  X(void, binary_row, (int op, const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n)) \
  X(void, reduce, (int op, const float* x, float* y, int32_t* idx, int64_t outer, int64_t dim, int64_t inner)) \
  X(void, softmax, (const float* x, float* y, int64_t rows, int64_t cols, bool log))                         \
  X(void, softmax_bwd, (const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, bool log))   \
  X(void, rmsnorm_fwd, (const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps)) \
  X(void, rmsnorm_bwd, (const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw, int64_t rows, int64_t dim)) \
  X(void, layernorm_fwd, (const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows, int64_t dim, float eps)) \
  X(void, layernorm_bwd, (const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx, float* dw, float* db, int64_t rows, int64_t dim)) \
  X(int64_t, rope, (const RopeArgs& a))                                                                       \
  X(void, swiglu_fwd, (const float* gate, const float* up, float* out, int64_t n))                           \
  X(void, swiglu_bwd, (const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n)) \
  X(void, attention_fwd, (const AttentionArgs& a))                                                            \
  X(void, attention_bwd, (const AttentionArgs& a))                                                            \
  X(int64_t, ce_fused_fwd, (const CrossEntropyArgs& a))                                                       \
  X(int64_t, ce_fused_bwd, (const CrossEntropyArgs& a))                                                       \
  X(int64_t, ce_fused_sweep, (const CrossEntropyArgs& a))                                                     \
  X(void, adamw, (float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a))              \
  X(double, sumsq, (const float* x, int64_t n))                                                               \
  X(void, cast, (const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n))                     \
  X(void, nf4_dequantize, (const uint8_t* packed, const float* absmax, const uint8_t* qabsmax, float offset, int64_t start, int64_t count, float* out)) \
  X(void, dropout_mask, (uint32_t key0, uint32_t key1, double keep, const float* x, float* out, float* mask, int64_t n))

// dropout_mask: inverted dropout from a counter-based hash keyed by two draws of the caller's Rng: for each i,
// z = h(key0, key1, i), mask[i] = z / 2^32 < keep ? 1/keep : 0, out[i] = x[i] * mask[i] (out or mask may be
// null; out may be x). Elements are independent: threads and vector lanes split them, the result is the same.

// Element i's draw: murmur3's 32-bit finalizer twice over the counter (i + 1) and the keys.
inline uint32_t dropout_fmix(uint32_t z) {
  z = (z ^ (z >> 16)) * 0x85EBCA6Bu;
  z = (z ^ (z >> 13)) * 0xC2B2AE35u;
  return z ^ (z >> 16);
}
inline uint32_t dropout_hash(uint32_t key0, uint32_t key1, int64_t i) {
  return dropout_fmix(dropout_fmix(key0 + 0x9E3779B9u * static_cast<uint32_t>(i + 1)) ^ key1);
}

#define SFT_DECLARE_KERNEL(ret, name, params) ret name params;

namespace naive { SFT_SIMD_KERNELS(SFT_DECLARE_KERNEL) }
namespace avx2 { SFT_SIMD_KERNELS(SFT_DECLARE_KERNEL) }
namespace avx512 { SFT_SIMD_KERNELS(SFT_DECLARE_KERNEL) }

namespace k {
// Dispatching entry points: k::name(...) calls the active ISA's version of each SIMD kernel.
#define SFT_DISPATCH_KERNEL(ret, name, params)                    \
  template <typename... A>                                        \
  inline ret name(A&&... a) {                                     \
    switch (active_isa()) {                                       \
      case kAvx512: return avx512::name(std::forward<A>(a)...);   \
      case kAvx2: return avx2::name(std::forward<A>(a)...);       \
      default: return naive::name(std::forward<A>(a)...);         \
    }                                                             \
  }
SFT_SIMD_KERNELS(SFT_DISPATCH_KERNEL)
#undef SFT_DISPATCH_KERNEL

// Elementwise binary op with broadcasting: a and b are read through strides (0 on broadcast dims) over
// `shape` (ndim <= 8); out is contiguous.
void binary_nd(int op, const float* a, const int64_t* a_strides, const float* b, const int64_t* b_strides,
               float* out, const int64_t* shape, int ndim);
// out = cond != 0 ? a : b, all contiguous of n elements.
void where(const float* cond, const float* a, const float* b, float* out, int64_t n);
// Gathers rows of weight (vocab, dim) by ids (n). Returns -1, or the first position whose id is out of range.
int64_t embedding_fwd(const float* weight, const int32_t* ids, float* out, int64_t n, int64_t vocab, int64_t dim);
// dweight (vocab, dim) += scatter of dout (n, dim) rows by ids; deterministic (each thread owns columns).
int64_t embedding_bwd(const int32_t* ids, const float* dout, float* dweight, int64_t n, int64_t vocab, int64_t dim);
// Index of the max of each row (first on ties).
void argmax(const float* x, int32_t* out, int64_t rows, int64_t cols);
// k largest of each row, descending (lower index first on ties).
void topk(const float* x, float* values, int32_t* indices, int64_t rows, int64_t cols, int64_t k);
// Copies a strided view into a strided destination, element size elem_bytes (1, 2 or 4); with accumulate
// (fp32 only) adds instead of copying. Strides are in elements.
void strided_copy(const void* src, const int64_t* src_strides, void* dst, const int64_t* dst_strides,
                  const int64_t* shape, int ndim, int elem_bytes, bool accumulate);
void fill_f32(float* dst, int64_t n, float value);
void fill_i32(int32_t* dst, int64_t n, int32_t value);
}  // namespace k

// f32 -> the nearest bf16 (ties to even), kept in f32 format (low 16 bits zero); NaN stays a quiet NaN.
// The scalar reference of the bf16 GEMM's operand rounding; bit-exact with the cast kernels' f32 -> bf16.
inline float round_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) u |= 0x00400000u;   // quiet the NaN so truncation keeps it a NaN
  else u += 0x7FFFu + ((u >> 16) & 1u);                      // ties go to the even upper half
  u &= 0xFFFF0000u;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

namespace avx512bf16 {
// The bf16 GEMM on bf16 pair panels (native/kernels/bf16/gemm_dpbf16.cc): emulate = false uses vdpbf16ps.
void gemm(const GemmArgs& a, bool emulate);
}

namespace amx {
// The bf16 GEMM on AMX tiles of bf16 pairs (native/kernels/amx/gemm_amx.cc): emulate = false uses tdpbf16ps.
void gemm(const GemmArgs& a, bool emulate);
}

// Bytes per element of a storage dtype.
inline int dtype_bytes(int dtype) { return dtype == kBF16 || dtype == kF16 ? 2 : 4; }

}  // namespace sft
