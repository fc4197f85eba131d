// Glue for the elementwise family: unary/binary ops, reductions, softmax, where, strided copy, fill, casts,
// embedding, argmax/top-k, AdamW and sumsq. Every buffer's exact extent is computed from the sizes (and
// strides) and checked against its handle before a kernel runs, so JS cannot make a kernel read or write
// out of bounds; argument order follows src/backend/binding.ts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "glue/args.h"
#include "kernels/kernels.h"

namespace sft::glue {

namespace {

constexpr int64_t kMaxElems = int64_t(1) << 40;
constexpr int kMaxDims = 8;

const char* const kUnaryNames[kUnaryCount] = {"neg", "exp", "log", "sqrt", "rsqrt", "silu",
                                              "gelu", "scale", "powScalar", "addScalar", "square", "relu"};
const char* const kBinaryNames[kBinaryCount] = {"add", "sub", "mul", "div", "pow", "maximum"};
const char* const kReduceNames[kReduceCount] = {"sum", "mean", "max"};
const char* const kDtypeNames[4] = {"float32", "bfloat16", "float16", "int32"};

// Reads an op code in [0, count) and returns the op's display name, e.g. "unary(exp)".
std::string op_name(const Napi::CallbackInfo& info, size_t i, const char* family, int count, const char* const* names,
                    int* code) {
  int64_t c = i64(info, i, family, "op");
  if (c < 0 || c >= count) fail(info.Env(), family, "unknown op code " + std::to_string(c));
  *code = static_cast<int>(c);
  return std::string(family) + "(" + names[c] + ")";
}

int dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  int64_t d = i64(info, i, op, name);
  if (d < kF32 || d > kI32) fail(info.Env(), op, std::string("unknown dtype code ") + std::to_string(d) + " for '" + name + "'");
  return static_cast<int>(d);
}

// a * b for element counts; fails the op instead of overflowing.
int64_t mul_count(Napi::Env env, const std::string& op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r) || r > kMaxElems) fail(env, op, "size too large (" + std::to_string(a) + " x " + std::to_string(b) + ")");
  return r;
}

std::string list_str(const int64_t* v, int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// A JS array of at most 8 non-negative integers (a shape or element strides).
int dims_arg(const Napi::CallbackInfo& info, size_t i, const std::string& op, const char* name, int64_t* out) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsArray()) fail(env, op, std::string("argument '") + name + "' must be an array");
  Napi::Array a = info[i].As<Napi::Array>();
  if (a.Length() > static_cast<uint32_t>(kMaxDims))
    fail(env, op, std::string("'") + name + "' has " + std::to_string(a.Length()) + " dims; at most 8 are supported");
  for (uint32_t j = 0; j < a.Length(); ++j) {
    Napi::Value v = a.Get(j);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!(d == std::floor(d)) || d > static_cast<double>(kMaxElems))
      fail(env, op, std::string("'") + name + "' must hold integers, got entry " + std::to_string(j) + " = " + v.ToString().Utf8Value());
    if (d < 0) fail(env, op, std::string("'") + name + "' has a negative entry " + std::to_string(static_cast<int64_t>(d)) + " (negative strides are not supported)");
    out[j] = static_cast<int64_t>(d);
  }
  return static_cast<int>(a.Length());
}

// Elements a strided view spans (see strided_extent), with overflow checks.
int64_t extent(Napi::Env env, const std::string& op, const int64_t* shape, const int64_t* strides, int ndim) {
  for (int i = 0; i < ndim; ++i)
    if (shape[i] == 0) return 0;
  int64_t last = 0;
  for (int i = 0; i < ndim; ++i) {
    int64_t t = 0;
    if (__builtin_mul_overflow(shape[i] - 1, strides[i], &t) || __builtin_add_overflow(last, t, &last) || last >= kMaxElems)
      fail(env, op, "strided view too large: shape " + list_str(shape, ndim) + ", strides " + list_str(strides, ndim));
  }
  return strided_extent(shape, strides, ndim);
}

int64_t numel(Napi::Env env, const std::string& op, const int64_t* shape, int ndim) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n = mul_count(env, op, n, shape[i]);
  return n;
}

// Runs a kernel, turning a C++ exception (e.g. out of memory for scratch space) into the op's error.
template <typename F>
void guarded(Napi::Env env, const std::string& op, F&& f) {
  std::string err;
  try {
    f();
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (!err.empty()) fail(env, op, err);
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  int code = 0;
  std::string op = op_name(info, 0, "unary", kUnaryCount, kUnaryNames, &code);
  const char* o = op.c_str();
  int64_t n = dim(info, 5, o, "n");
  const float* x = buf<const float>(info, 1, o, "x", n, false);
  float* y = buf<float>(info, 3, o, "y", n, true);
  float alpha = static_cast<float>(f64(info, 6, o, "alpha"));
  k::unary(code, x, y, n, alpha);
  return info.Env().Undefined();
}

Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  int code = 0;
  std::string op = op_name(info, 0, "unaryBackward", kUnaryCount, kUnaryNames, &code);
  const char* o = op.c_str();
  int64_t n = dim(info, 9, o, "n");
  // x and y may be absent (handle 0) when the derivative does not read them.
  const bool needs_y = code == kExp || code == kSqrt || code == kRsqrt;
  const bool needs_x = code == kLog || code == kSilu || code == kGelu || code == kPowScalar || code == kSquare || code == kRelu;
  const float* x = buf<const float>(info, 1, o, "x", n, false, !needs_x);
  const float* y = buf<const float>(info, 3, o, "y", n, false, !needs_y);
  const float* dy = buf<const float>(info, 5, o, "dy", n, false);
  float* dx = buf<float>(info, 7, o, "dx", n, true);
  float alpha = static_cast<float>(f64(info, 10, o, "alpha"));
  k::unary_bwd(code, x, y, dy, dx, n, alpha);
  return info.Env().Undefined();
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  int code = 0;
  std::string op = op_name(info, 0, "binary", kBinaryCount, kBinaryNames, &code);
  const char* o = op.c_str();
  Napi::Env env = info.Env();
  int64_t as[kMaxDims], bs[kMaxDims], shape[kMaxDims];
  int na = dims_arg(info, 3, op, "aStrides", as);
  int nb = dims_arg(info, 6, op, "bStrides", bs);
  int nd = dims_arg(info, 9, op, "shape", shape);
  if (na != nd || nb != nd)
    fail(env, op, "shape " + list_str(shape, nd) + " has " + std::to_string(nd) + " dims but aStrides " + list_str(as, na) +
                      " and bStrides " + list_str(bs, nb) + " must match it");
  int64_t n = numel(env, op, shape, nd);
  const float* a = buf<const float>(info, 1, o, "a", extent(env, op, shape, as, nd), false);
  const float* b = buf<const float>(info, 4, o, "b", extent(env, op, shape, bs, nd), false);
  float* out = buf<float>(info, 7, o, "out", n, true);
  k::binary_nd(code, a, as, b, bs, out, shape, nd);
  return env.Undefined();
}

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  int code = 0;
  std::string op = op_name(info, 0, "reduce", kReduceCount, kReduceNames, &code);
  const char* o = op.c_str();
  Napi::Env env = info.Env();
  int64_t outer = dim(info, 7, o, "outer"), d = dim(info, 8, o, "dim"), inner = dim(info, 9, o, "inner");
  int64_t nout = mul_count(env, op, outer, inner);
  int64_t nin = mul_count(env, op, nout, d);
  if (code == kMax && d == 0 && nout > 0) fail(env, op, "max over an empty dimension (outer " + std::to_string(outer) + ", dim 0, inner " + std::to_string(inner) + ")");
  const float* x = buf<const float>(info, 1, o, "x", nin, false);
  float* y = buf<float>(info, 3, o, "y", nout, true);
  int32_t* idx = buf<int32_t>(info, 5, o, "idx", nout, true, true);
  if (idx && code != kMax) fail(env, op, "argmax indices (idx) are only produced by max");
  guarded(env, op, [&] { k::reduce(code, x, y, idx, outer, d, inner); });
  return env.Undefined();
}

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const char* o = "softmax";
  int64_t rows = dim(info, 4, o, "rows"), cols = dim(info, 5, o, "cols");
  int64_t n = mul_count(info.Env(), o, rows, cols);
  const float* x = buf<const float>(info, 0, o, "x", n, false);
  float* y = buf<float>(info, 2, o, "y", n, true);
  bool log = flag(info, 6, o, "log");
  k::softmax(x, y, rows, cols, log);
  return info.Env().Undefined();
}

Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  const char* o = "softmaxBackward";
  int64_t rows = dim(info, 6, o, "rows"), cols = dim(info, 7, o, "cols");
  int64_t n = mul_count(info.Env(), o, rows, cols);
  const float* y = buf<const float>(info, 0, o, "y", n, false);
  const float* dy = buf<const float>(info, 2, o, "dy", n, false);
  float* dx = buf<float>(info, 4, o, "dx", n, true);
  bool log = flag(info, 8, o, "log");
  k::softmax_bwd(y, dy, dx, rows, cols, log);
  return info.Env().Undefined();
}

Napi::Value Where(const Napi::CallbackInfo& info) {
  const char* o = "where";
  int64_t n = dim(info, 8, o, "n");
  const float* cond = buf<const float>(info, 0, o, "cond", n, false);
  const float* a = buf<const float>(info, 2, o, "a", n, false);
  const float* b = buf<const float>(info, 4, o, "b", n, false);
  float* out = buf<float>(info, 6, o, "out", n, true);
  k::where(cond, a, b, out, n);
  return info.Env().Undefined();
}

// Fails unless distinct indices of the view address distinct elements (sorted by stride, each dim must
// step past everything the smaller-stride dims span), so parallel writes never collide.
void check_no_self_overlap(Napi::Env env, const std::string& op, const int64_t* shape, const int64_t* strides, int ndim) {
  int order[kMaxDims];
  int m = 0;
  for (int i = 0; i < ndim; ++i)
    if (shape[i] > 1) order[m++] = i;
  for (int j = 1; j < m; ++j)  // insertion sort by stride: at most 8 dims
    for (int t = j; t > 0 && strides[order[t]] < strides[order[t - 1]]; --t) std::swap(order[t], order[t - 1]);
  int64_t span = 0;  // the largest offset reachable with the dims so far
  for (int j = 0; j < m; ++j) {
    int i = order[j];
    if (strides[i] <= span)
      fail(env, op, "destination view overlaps itself (shape " + list_str(shape, ndim) + ", strides " + list_str(strides, ndim) + ")");
    span += (shape[i] - 1) * strides[i];
  }
}

Napi::Value StridedCopy(const Napi::CallbackInfo& info) {
  const std::string op = "stridedCopy";
  const char* o = op.c_str();
  Napi::Env env = info.Env();
  int64_t ss[kMaxDims], ds[kMaxDims], shape[kMaxDims];
  int ns = dims_arg(info, 2, op, "srcStrides", ss);
  int ndd = dims_arg(info, 5, op, "dstStrides", ds);
  int nd = dims_arg(info, 6, op, "shape", shape);
  if (ns != nd || ndd != nd)
    fail(env, op, "shape " + list_str(shape, nd) + " has " + std::to_string(nd) + " dims but srcStrides " + list_str(ss, ns) +
                      " and dstStrides " + list_str(ds, ndd) + " must match it");
  int64_t eb = i64(info, 7, o, "elemBytes");
  if (eb != 1 && eb != 2 && eb != 4) fail(env, op, "elemBytes must be 1, 2 or 4, got " + std::to_string(eb));
  bool acc = flag(info, 8, o, "accumulate");
  if (acc && eb != 4) fail(env, op, "accumulate is only supported for float32 (elemBytes 4)");
  numel(env, op, shape, nd);
  check_no_self_overlap(env, op, shape, ds, nd);
  const uint8_t* src = buf<const uint8_t>(info, 0, o, "src", extent(env, op, shape, ss, nd), false, false, static_cast<size_t>(eb));
  uint8_t* dst = buf<uint8_t>(info, 3, o, "dst", extent(env, op, shape, ds, nd), true, false, static_cast<size_t>(eb));
  k::strided_copy(src, ss, dst, ds, shape, nd, static_cast<int>(eb), acc);
  return env.Undefined();
}

// dropoutMask(key0, key1, keep, x, xOff, out, outOff, mask, maskOff, n): x, out, mask absent when handle 0.
Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  const char* o = "dropoutMask";
  Napi::Env env = info.Env();
  const int64_t key0 = i64(info, 0, o, "key0"), key1 = i64(info, 1, o, "key1");
  if (key0 < 0 || key0 > 0xFFFFFFFFll || key1 < 0 || key1 > 0xFFFFFFFFll) fail(env, o, "keys must be 32-bit unsigned integers");
  double keep = f64(info, 2, o, "keep");
  if (!(keep > 0.0 && keep <= 1.0)) fail(env, o, "keep must be in (0, 1], got " + std::to_string(keep));
  int64_t n = dim(info, 9, o, "n");
  if (n > 0xFFFFFFFFll) fail(env, o, "n must be below 2^32 (one mask's counter), got " + std::to_string(n));
  const float* x = buf<float>(info, 3, o, "x", n, false, true);
  float* out = buf<float>(info, 5, o, "out", n, true, true);
  float* mask = buf<float>(info, 7, o, "mask", n, true, true);
  if (out && !x) fail(env, o, "out needs x");
  if (!out && !mask) fail(env, o, "give out, mask or both");
  k::dropout_mask(static_cast<uint32_t>(key0), static_cast<uint32_t>(key1), keep, x, out, mask, n);
  return env.Undefined();
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  const char* o = "fill";
  Napi::Env env = info.Env();
  int64_t n = dim(info, 2, o, "n");
  double value = f64(info, 3, o, "value");
  int dt = dtype_arg(info, 4, o, "dtype");
  void* x = buf<uint8_t>(info, 0, o, "x", n, true, false, static_cast<size_t>(dtype_bytes(dt)));
  if (dt == kF32) {
    k::fill_f32(static_cast<float*>(x), n, static_cast<float>(value));
  } else if (dt == kI32) {
    if (!(value == std::floor(value)) || value < -2147483648.0 || value > 2147483647.0)
      fail(env, o, "value " + std::to_string(value) + " is not an int32");
    k::fill_i32(static_cast<int32_t*>(x), n, static_cast<int32_t>(value));
  } else {
    // 16-bit storage: convert the value once, then broadcast it with a stride-0 copy.
    float f = static_cast<float>(value);
    uint16_t h = 0;
    k::cast(&f, kF32, &h, dt, 1);
    int64_t zero = 0, one = 1;
    if (n > 0) k::strided_copy(&h, &zero, x, &one, &n, 1, 2, false);
  }
  return env.Undefined();
}

Napi::Value Cast(const Napi::CallbackInfo& info) {
  const std::string op = "cast";
  const char* o = op.c_str();
  Napi::Env env = info.Env();
  int sd = dtype_arg(info, 2, o, "srcDtype"), dd = dtype_arg(info, 5, o, "dstDtype");
  int64_t n = dim(info, 6, o, "n");
  const std::string full = op + "(" + kDtypeNames[sd] + " -> " + kDtypeNames[dd] + ")";
  const uint8_t* src = buf<const uint8_t>(info, 0, full.c_str(), "src", n, false, false, static_cast<size_t>(dtype_bytes(sd)));
  uint8_t* dst = buf<uint8_t>(info, 3, full.c_str(), "dst", n, true, false, static_cast<size_t>(dtype_bytes(dd)));
  // Converting in place is fine element by element (same offset, same width); any other overlap is not.
  const uint8_t* s_end = src + n * dtype_bytes(sd);
  const uint8_t* d_end = dst + n * dtype_bytes(dd);
  bool overlap = n > 0 && src < d_end && dst < s_end;
  if (overlap && !(src == dst && dtype_bytes(sd) == dtype_bytes(dd))) fail(env, full, "src and dst overlap");
  k::cast(src, sd, dst, dd, n);
  return env.Undefined();
}

void check_embedding_sizes(Napi::Env env, const char* op, int64_t vocab) {
  if (vocab > 2147483647) fail(env, op, "vocab size " + std::to_string(vocab) + " does not fit int32 ids");
}

[[noreturn]] void bad_id(const Napi::CallbackInfo& info, const char* op, const int32_t* ids, int64_t pos, int64_t vocab) {
  fail(info.Env(), op, "id " + std::to_string(ids[pos]) + " at position " + std::to_string(pos) + " is out of range for vocab size " +
                           std::to_string(vocab));
}

Napi::Value Embedding(const Napi::CallbackInfo& info) {
  const char* o = "embedding";
  Napi::Env env = info.Env();
  int64_t n = dim(info, 6, o, "n"), vocab = dim(info, 7, o, "vocab"), d = dim(info, 8, o, "dim");
  check_embedding_sizes(env, o, vocab);
  const float* w = buf<const float>(info, 0, o, "weight", mul_count(env, o, vocab, d), false);
  const int32_t* ids = buf<const int32_t>(info, 2, o, "ids", n, false);
  float* out = buf<float>(info, 4, o, "out", mul_count(env, o, n, d), true);
  int64_t bad = k::embedding_fwd(w, ids, out, n, vocab, d);
  if (bad >= 0) bad_id(info, o, ids, bad, vocab);
  return env.Undefined();
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  const char* o = "embeddingBackward";
  Napi::Env env = info.Env();
  int64_t n = dim(info, 6, o, "n"), vocab = dim(info, 7, o, "vocab"), d = dim(info, 8, o, "dim");
  check_embedding_sizes(env, o, vocab);
  const int32_t* ids = buf<const int32_t>(info, 0, o, "ids", n, false);
  const float* dout = buf<const float>(info, 2, o, "dout", mul_count(env, o, n, d), false);
  float* dw = buf<float>(info, 4, o, "dweight", mul_count(env, o, vocab, d), true);
  int64_t bad = k::embedding_bwd(ids, dout, dw, n, vocab, d);
  if (bad >= 0) bad_id(info, o, ids, bad, vocab);
  return env.Undefined();
}

Napi::Value Argmax(const Napi::CallbackInfo& info) {
  const char* o = "argmax";
  Napi::Env env = info.Env();
  int64_t rows = dim(info, 4, o, "rows"), cols = dim(info, 5, o, "cols");
  if (cols == 0 && rows > 0) fail(env, o, "argmax of empty rows (cols 0)");
  if (cols > 2147483647) fail(env, o, "cols " + std::to_string(cols) + " does not fit int32 indices");
  const float* x = buf<const float>(info, 0, o, "x", mul_count(env, o, rows, cols), false);
  int32_t* out = buf<int32_t>(info, 2, o, "out", rows, true);
  k::argmax(x, out, rows, cols);
  return env.Undefined();
}

Napi::Value Topk(const Napi::CallbackInfo& info) {
  const char* o = "topk";
  Napi::Env env = info.Env();
  int64_t rows = dim(info, 6, o, "rows"), cols = dim(info, 7, o, "cols"), kk = dim(info, 8, o, "k");
  if (kk > cols) fail(env, o, "k " + std::to_string(kk) + " is larger than the row length " + std::to_string(cols));
  if (cols > 2147483647) fail(env, o, "cols " + std::to_string(cols) + " does not fit int32 indices");
  const float* x = buf<const float>(info, 0, o, "x", mul_count(env, o, rows, cols), false);
  float* values = buf<float>(info, 2, o, "values", mul_count(env, o, rows, kk), true);
  int32_t* indices = buf<int32_t>(info, 4, o, "indices", mul_count(env, o, rows, kk), true);
  guarded(env, o, [&] { k::topk(x, values, indices, rows, cols, kk); });
  return env.Undefined();
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  const char* o = "adamw";
  Napi::Env env = info.Env();
  int64_t n = dim(info, 8, o, "n");
  float* p = buf<float>(info, 0, o, "p", n, true);
  const float* g = buf<const float>(info, 2, o, "g", n, false);
  float* m = buf<float>(info, 4, o, "m", n, true);
  float* v = buf<float>(info, 6, o, "v", n, true);
  AdamWArgs a{};
  a.lr = static_cast<float>(f64(info, 9, o, "lr"));
  a.beta1 = static_cast<float>(f64(info, 10, o, "beta1"));
  a.beta2 = static_cast<float>(f64(info, 11, o, "beta2"));
  a.eps = static_cast<float>(f64(info, 12, o, "eps"));
  a.weight_decay = static_cast<float>(f64(info, 13, o, "weightDecay"));
  a.bc1 = static_cast<float>(f64(info, 14, o, "bc1"));
  a.bc2 = static_cast<float>(f64(info, 15, o, "bc2"));
  a.grad_scale = static_cast<float>(f64(info, 16, o, "gradScale"));
  if (!(a.bc1 > 0.f && a.bc1 <= 1.f) || !(a.bc2 > 0.f && a.bc2 <= 1.f))
    fail(env, o, "bias corrections must be in (0, 1] (bc1 = 1 - beta1^t, bc2 = 1 - beta2^t), got bc1 " + std::to_string(a.bc1) +
                     ", bc2 " + std::to_string(a.bc2));
  k::adamw(p, g, m, v, n, a);
  return env.Undefined();
}

Napi::Value Sumsq(const Napi::CallbackInfo& info) {
  const char* o = "sumsq";
  int64_t n = dim(info, 2, o, "n");
  const float* x = buf<const float>(info, 0, o, "x", n, false);
  double s = 0.0;
  guarded(info.Env(), o, [&] { s = k::sumsq(x, n); });
  return Napi::Number::New(info.Env(), s);
}

}  // namespace

void register_elementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("unary", Napi::Function::New(env, Unary, "unary"));
  exports.Set("unaryBackward", Napi::Function::New(env, UnaryBackward, "unaryBackward"));
  exports.Set("binary", Napi::Function::New(env, Binary, "binary"));
  exports.Set("reduce", Napi::Function::New(env, Reduce, "reduce"));
  exports.Set("softmax", Napi::Function::New(env, Softmax, "softmax"));
  exports.Set("softmaxBackward", Napi::Function::New(env, SoftmaxBackward, "softmaxBackward"));
  exports.Set("where", Napi::Function::New(env, Where, "where"));
  exports.Set("stridedCopy", Napi::Function::New(env, StridedCopy, "stridedCopy"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("dropoutMask", Napi::Function::New(env, DropoutMask, "dropoutMask"));
  exports.Set("cast", Napi::Function::New(env, Cast, "cast"));
  exports.Set("embedding", Napi::Function::New(env, Embedding, "embedding"));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
  exports.Set("argmax", Napi::Function::New(env, Argmax, "argmax"));
  exports.Set("topk", Napi::Function::New(env, Topk, "topk"));
  exports.Set("adamw", Napi::Function::New(env, AdamW, "adamw"));
  exports.Set("sumsq", Napi::Function::New(env, Sumsq, "sumsq"));
}

}  // namespace sft::glue
