// Glue for the low-precision weight kernels (kernels/quant/): NF4 with optional double-quantized scales, and
// int8 per output channel. Buffer extents are computed from the sizes and checked like every other family;
// argument order follows src/backend/binding.ts.
#include <string>

#include "glue/args.h"
#include "kernels/quant/quant.h"

namespace sft::glue {

namespace {

namespace q = sft::quant;

int64_t blocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

// rows * cols for an element count; fails the op instead of overflowing.
int64_t product(Napi::Env env, const char* op, int64_t rows, int64_t cols) {
  int64_t r = 0;
  if (__builtin_mul_overflow(rows, cols, &r) || r > (int64_t(1) << 40)) fail(env, op, "size too large (" + std::to_string(rows) + " x " + std::to_string(cols) + ")");
  return r;
}

// nf4Quantize(x, xOff, n, packed, pOff, absmax, aOff)
Napi::Value Nf4Quantize(const Napi::CallbackInfo& info) {
  const char* op = "nf4Quantize";
  int64_t n = dim(info, 2, op, "n");
  const float* x = buf<const float>(info, 0, op, "x", n, false);
  uint8_t* packed = buf<uint8_t>(info, 3, op, "packed", blocks(n, 2), true);
  float* absmax = buf<float>(info, 5, op, "absmax", blocks(n, q::kNf4Block), true);
  q::nf4_quantize(x, n, packed, absmax);
  return info.Env().Undefined();
}

// nf4Dequantize(packed, pOff, scales, sOff, qabsmax, qOff, offset, n, start, count, out, oOff): scales are the
// per-block absmax when qabsmax is absent (handle 0), else the per-256-block absmax2 of the double quantization.
Napi::Value Nf4Dequantize(const Napi::CallbackInfo& info) {
  const char* op = "nf4Dequantize";
  Napi::Env env = info.Env();
  int64_t n = dim(info, 7, op, "n"), start = dim(info, 8, op, "start"), count = dim(info, 9, op, "count");
  if (start + count > n) fail(env, op, "elements [" + std::to_string(start) + ", " + std::to_string(start + count) + ") past the tensor's " + std::to_string(n));
  const uint8_t* packed = buf<const uint8_t>(info, 0, op, "packed", blocks(n, 2), false);
  const uint8_t* qabsmax = buf<const uint8_t>(info, 4, op, "qabsmax", blocks(n, q::kNf4Block), false, true);
  int64_t nscales = qabsmax ? blocks(blocks(n, q::kNf4Block), q::kDqBlock) : blocks(n, q::kNf4Block);
  const float* scales = buf<const float>(info, 2, op, "scales", nscales, false);
  double offset = f64(info, 6, op, "offset");
  float* out = buf<float>(info, 10, op, "out", count, true);
  q::nf4_dequantize(packed, scales, qabsmax, static_cast<float>(offset), start, count, out);
  return env.Undefined();
}

// dqQuantize(absmax, aOff, nb, codes, cOff, absmax2, a2Off) -> offset
Napi::Value DqQuantize(const Napi::CallbackInfo& info) {
  const char* op = "dqQuantize";
  int64_t nb = dim(info, 2, op, "nb");
  const float* absmax = buf<const float>(info, 0, op, "absmax", nb, false);
  uint8_t* codes = buf<uint8_t>(info, 3, op, "codes", nb, true);
  float* absmax2 = buf<float>(info, 5, op, "absmax2", blocks(nb, q::kDqBlock), true);
  return Napi::Number::New(info.Env(), q::dq_quantize(absmax, nb, codes, absmax2));
}

// dqDequantize(codes, cOff, absmax2, a2Off, offset, nb, out, oOff)
Napi::Value DqDequantize(const Napi::CallbackInfo& info) {
  const char* op = "dqDequantize";
  int64_t nb = dim(info, 5, op, "nb");
  const uint8_t* codes = buf<const uint8_t>(info, 0, op, "codes", nb, false);
  const float* absmax2 = buf<const float>(info, 2, op, "absmax2", blocks(nb, q::kDqBlock), false);
  double offset = f64(info, 4, op, "offset");
  float* out = buf<float>(info, 6, op, "out", nb, true);
  q::dq_dequantize(codes, absmax2, static_cast<float>(offset), nb, out);
  return info.Env().Undefined();
}

// int8Quantize(w, wOff, rows, cols, q, qOff, scale, sOff)
Napi::Value Int8Quantize(const Napi::CallbackInfo& info) {
  const char* op = "int8Quantize";
  int64_t rows = dim(info, 2, op, "rows"), cols = dim(info, 3, op, "cols");
  int64_t n = product(info.Env(), op, rows, cols);
  const float* w = buf<const float>(info, 0, op, "w", n, false);
  int8_t* qv = buf<int8_t>(info, 4, op, "q", n, true);
  float* scale = buf<float>(info, 6, op, "scale", rows, true);
  q::int8_quantize(w, rows, cols, qv, scale);
  return info.Env().Undefined();
}

// int8Dequantize(q, qOff, scale, sOff, totalRows, row0, rows, cols, out, oOff)
Napi::Value Int8Dequantize(const Napi::CallbackInfo& info) {
  const char* op = "int8Dequantize";
  Napi::Env env = info.Env();
  int64_t total = dim(info, 4, op, "totalRows"), row0 = dim(info, 5, op, "row0"), rows = dim(info, 6, op, "rows");
  int64_t cols = dim(info, 7, op, "cols");
  if (row0 + rows > total) fail(env, op, "rows [" + std::to_string(row0) + ", " + std::to_string(row0 + rows) + ") past the tensor's " + std::to_string(total));
  const int8_t* qv = buf<const int8_t>(info, 0, op, "q", product(env, op, total, cols), false);
  const float* scale = buf<const float>(info, 2, op, "scale", total, false);
  float* out = buf<float>(info, 8, op, "out", product(env, op, rows, cols), true);
  q::int8_dequantize(qv, scale, row0, rows, cols, out);
  return env.Undefined();
}

}  // namespace

void register_quant(Napi::Env env, Napi::Object exports) {
  exports.Set("nf4Quantize", Napi::Function::New(env, Nf4Quantize, "nf4Quantize"));
  exports.Set("nf4Dequantize", Napi::Function::New(env, Nf4Dequantize, "nf4Dequantize"));
  exports.Set("dqQuantize", Napi::Function::New(env, DqQuantize, "dqQuantize"));
  exports.Set("dqDequantize", Napi::Function::New(env, DqDequantize, "dqDequantize"));
  exports.Set("int8Quantize", Napi::Function::New(env, Int8Quantize, "int8Quantize"));
  exports.Set("int8Dequantize", Napi::Function::New(env, Int8Dequantize, "int8Dequantize"));
}

}  // namespace sft::glue
