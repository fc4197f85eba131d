// Glue for the fused NN kernels (RMSNorm, LayerNorm, RoPE, SwiGLU, attention, projection + cross-entropy):
// reads arguments in binding.ts's order, validates the dimensions, bounds-checks every buffer against the
// exact extent the kernel touches, then calls the dispatching kernel. Errors name the op, tensor and shapes.
#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>

#include "glue/args.h"
#include "kernels/kernels.h"

namespace sft::glue {

namespace {

// Product of sizes; fails instead of overflowing.
int64_t prod(const Napi::CallbackInfo& info, const char* op, std::initializer_list<int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims)
    if (__builtin_mul_overflow(p, d, &p) || p > (int64_t(1) << 50)) fail(info.Env(), op, "shape too large");
  return p;
}

// "name (a, b, c)": a tensor named with its shape, for error messages.
std::string tensor(const char* name, std::initializer_list<int64_t> dims) {
  std::string s = std::string(name) + " (";
  bool first = true;
  for (int64_t d : dims) {
    if (!first) s += ", ";
    s += std::to_string(d);
    first = false;
  }
  return s + ")";
}

float finite(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  double v = f64(info, i, op, name);
  if (!std::isfinite(v)) fail(info.Env(), op, std::string("argument '") + name + "' must be finite");
  return static_cast<float>(v);
}

// Runs a kernel, turning C++ exceptions (allocation failure of scratch space) into JS errors naming the op.
template <typename F>
auto guarded(const Napi::CallbackInfo& info, const char* op, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    fail(info.Env(), op, e.what());
  }
}

// --- RMSNorm

Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  const char* op = "rmsnormForward";
  int64_t rows = dim(info, 8, op, "rows"), d = dim(info, 9, op, "dim");
  double eps = f64(info, 10, op, "eps");
  if (d < 1) fail(info.Env(), op, "dim must be >= 1");
  if (!std::isfinite(eps) || eps < 0) fail(info.Env(), op, "eps must be finite and >= 0");
  int64_t n = prod(info, op, {rows, d});
  const float* x = buf<const float>(info, 0, op, tensor("x", {rows, d}).c_str(), n, false);
  const float* w = buf<const float>(info, 2, op, tensor("w", {d}).c_str(), d, false);
  float* y = buf<float>(info, 4, op, tensor("y", {rows, d}).c_str(), n, true);
  float* rstd = buf<float>(info, 6, op, tensor("rstd", {rows}).c_str(), rows, true);
  guarded(info, op, [&] { k::rmsnorm_fwd(x, w, y, rstd, rows, d, static_cast<float>(eps)); });
  return info.Env().Undefined();
}

Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  const char* op = "rmsnormBackward";
  int64_t rows = dim(info, 12, op, "rows"), d = dim(info, 13, op, "dim");
  if (d < 1) fail(info.Env(), op, "dim must be >= 1");
  int64_t n = prod(info, op, {rows, d});
  const float* x = buf<const float>(info, 0, op, tensor("x", {rows, d}).c_str(), n, false);
  const float* w = buf<const float>(info, 2, op, tensor("w", {d}).c_str(), d, false);
  const float* rstd = buf<const float>(info, 4, op, tensor("rstd", {rows}).c_str(), rows, false);
  const float* dy = buf<const float>(info, 6, op, tensor("dy", {rows, d}).c_str(), n, false);
  float* dx = buf<float>(info, 8, op, tensor("dx", {rows, d}).c_str(), n, true);
  float* dw = buf<float>(info, 10, op, tensor("dw", {d}).c_str(), d, true, true);
  guarded(info, op, [&] { k::rmsnorm_bwd(x, w, rstd, dy, dx, dw, rows, d); });
  return info.Env().Undefined();
}

// --- LayerNorm

Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  const char* op = "layernormForward";
  int64_t rows = dim(info, 12, op, "rows"), d = dim(info, 13, op, "dim");
  double eps = f64(info, 14, op, "eps");
  if (d < 1) fail(info.Env(), op, "dim must be >= 1");
  if (!std::isfinite(eps) || eps < 0) fail(info.Env(), op, "eps must be finite and >= 0");
  int64_t n = prod(info, op, {rows, d});
  const float* x = buf<const float>(info, 0, op, tensor("x", {rows, d}).c_str(), n, false);
  const float* w = buf<const float>(info, 2, op, tensor("w", {d}).c_str(), d, false, true);
  const float* b = buf<const float>(info, 4, op, tensor("b", {d}).c_str(), d, false, true);
  float* y = buf<float>(info, 6, op, tensor("y", {rows, d}).c_str(), n, true);
  float* mean = buf<float>(info, 8, op, tensor("mean", {rows}).c_str(), rows, true);
  float* rstd = buf<float>(info, 10, op, tensor("rstd", {rows}).c_str(), rows, true);
  guarded(info, op, [&] { k::layernorm_fwd(x, w, b, y, mean, rstd, rows, d, static_cast<float>(eps)); });
  return info.Env().Undefined();
}

Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  const char* op = "layernormBackward";
  int64_t rows = dim(info, 16, op, "rows"), d = dim(info, 17, op, "dim");
  if (d < 1) fail(info.Env(), op, "dim must be >= 1");
  int64_t n = prod(info, op, {rows, d});
  const float* x = buf<const float>(info, 0, op, tensor("x", {rows, d}).c_str(), n, false);
  const float* w = buf<const float>(info, 2, op, tensor("w", {d}).c_str(), d, false, true);
  const float* mean = buf<const float>(info, 4, op, tensor("mean", {rows}).c_str(), rows, false);
  const float* rstd = buf<const float>(info, 6, op, tensor("rstd", {rows}).c_str(), rows, false);
  const float* dy = buf<const float>(info, 8, op, tensor("dy", {rows, d}).c_str(), n, false);
  float* dx = buf<float>(info, 10, op, tensor("dx", {rows, d}).c_str(), n, true);
  float* dw = buf<float>(info, 12, op, tensor("dw", {d}).c_str(), d, true, true);
  float* db = buf<float>(info, 14, op, tensor("db", {d}).c_str(), d, true, true);
  if (dw && !w) fail(info.Env(), op, "dw given without w (a LayerNorm without weight has no weight gradient)");
  guarded(info, op, [&] { k::layernorm_bwd(x, w, mean, rstd, dy, dx, dw, db, rows, d); });
  return info.Env().Undefined();
}

// --- RoPE

Napi::Value Rope(const Napi::CallbackInfo& info) {
  const char* op = "rope";
  int64_t rows = dim(info, 10, op, "rows"), H = dim(info, 11, op, "H"), D = dim(info, 12, op, "D");
  int64_t rot = dim(info, 13, op, "rotDim"), pos_count = dim(info, 14, op, "posCount");
  bool backward = flag(info, 15, op, "backward");
  if (rot < 2 || rot % 2 != 0 || rot > D)
    fail(info.Env(), op, "rotDim " + std::to_string(rot) + " must be even, >= 2 and <= D (" + std::to_string(D) + ")");
  int64_t n = prod(info, op, {rows, H, D}), table = prod(info, op, {pos_count, rot / 2});
  const float* x = buf<const float>(info, 0, op, tensor("x", {rows, H, D}).c_str(), n, false);
  float* y = buf<float>(info, 2, op, tensor("y", {rows, H, D}).c_str(), n, true);
  const float* cos = buf<const float>(info, 4, op, tensor("cos", {pos_count, rot / 2}).c_str(), table, false);
  const float* sin = buf<const float>(info, 6, op, tensor("sin", {pos_count, rot / 2}).c_str(), table, false);
  const int32_t* pos = buf<const int32_t>(info, 8, op, tensor("positions", {rows}).c_str(), rows, false);
  RopeArgs a{x, y, cos, sin, pos, rows, H, D, rot, pos_count, backward};
  int64_t bad = guarded(info, op, [&] { return k::rope(a); });
  if (bad >= 0)
    fail(info.Env(), op, "position " + std::to_string(pos[bad]) + " at row " + std::to_string(bad) +
                             " is out of range [0, " + std::to_string(pos_count) + ") of the cos/sin tables");
  return info.Env().Undefined();
}

// --- SwiGLU

Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  const char* op = "swigluForward";
  int64_t n = dim(info, 6, op, "n");
  const float* gate = buf<const float>(info, 0, op, tensor("gate", {n}).c_str(), n, false);
  const float* up = buf<const float>(info, 2, op, tensor("up", {n}).c_str(), n, false);
  float* out = buf<float>(info, 4, op, tensor("out", {n}).c_str(), n, true);
  guarded(info, op, [&] { k::swiglu_fwd(gate, up, out, n); });
  return info.Env().Undefined();
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  const char* op = "swigluBackward";
  int64_t n = dim(info, 10, op, "n");
  const float* gate = buf<const float>(info, 0, op, tensor("gate", {n}).c_str(), n, false);
  const float* up = buf<const float>(info, 2, op, tensor("up", {n}).c_str(), n, false);
  const float* dout = buf<const float>(info, 4, op, tensor("dout", {n}).c_str(), n, false);
  float* dgate = buf<float>(info, 6, op, tensor("dgate", {n}).c_str(), n, true);
  float* dup = buf<float>(info, 8, op, tensor("dup", {n}).c_str(), n, true);
  guarded(info, op, [&] { k::swiglu_bwd(gate, up, dout, dgate, dup, n); });
  return info.Env().Undefined();
}

// --- attention

// Reads and checks the dimensions that both attention ops take, starting at argument `at`.
struct AttnDims {
  int64_t B, T, S, Hq, Hkv, D, kvbs, q_offset, window;
  float scale;
  bool causal;
  int64_t q_elems, kv_elems, kv_dense, lse_elems;
};

AttnDims attn_dims(const Napi::CallbackInfo& info, size_t at, const char* op) {
  AttnDims m{};
  m.B = dim(info, at, op, "B");
  m.T = dim(info, at + 1, op, "T");
  m.S = dim(info, at + 2, op, "S");
  m.Hq = dim(info, at + 3, op, "Hq");
  m.Hkv = dim(info, at + 4, op, "Hkv");
  m.D = dim(info, at + 5, op, "D");
  m.kvbs = dim(info, at + 6, op, "kvBatchStride");
  m.q_offset = dim(info, at + 7, op, "qOffset");
  m.scale = finite(info, at + 8, op, "scale");
  m.causal = flag(info, at + 9, op, "causal");
  // Optional sliding window (0 or absent: none).
  if (at + 10 < info.Length() && !info[at + 10].IsUndefined()) m.window = dim(info, at + 10, op, "window");
  std::string shapes = " (B=" + std::to_string(m.B) + ", T=" + std::to_string(m.T) + ", S=" + std::to_string(m.S) +
                       ", Hq=" + std::to_string(m.Hq) + ", Hkv=" + std::to_string(m.Hkv) + ", D=" + std::to_string(m.D) + ")";
  if (m.Hq < 1 || m.Hkv < 1 || m.D < 1) fail(info.Env(), op, "Hq, Hkv and D must be >= 1" + shapes);
  if (m.Hq % m.Hkv != 0) fail(info.Env(), op, "Hq must be a multiple of Hkv" + shapes);
  int64_t row = prod(info, op, {m.S, m.Hkv, m.D});
  if (m.kvbs < row)
    fail(info.Env(), op, "kvBatchStride " + std::to_string(m.kvbs) + " is smaller than S*Hkv*D = " + std::to_string(row) + shapes);
  m.q_elems = prod(info, op, {m.B, m.T, m.Hq, m.D});
  m.kv_dense = prod(info, op, {m.B, m.S, m.Hkv, m.D});
  m.kv_elems = m.B == 0 ? 0 : prod(info, op, {m.B - 1, m.kvbs}) + row;
  if (m.kv_elems > (int64_t(1) << 50)) fail(info.Env(), op, "shape too large" + shapes);
  m.lse_elems = prod(info, op, {m.B, m.Hq, m.T});
  return m;
}

AttentionArgs attn_args(const AttnDims& m) {
  AttentionArgs a{};
  a.B = m.B;
  a.T = m.T;
  a.S = m.S;
  a.Hq = m.Hq;
  a.Hkv = m.Hkv;
  a.D = m.D;
  a.kv_bstride = m.kvbs;
  a.q_offset = m.q_offset;
  a.scale = m.scale;
  a.causal = m.causal;
  a.window = m.window;
  return a;
}

void attn_segments(const Napi::CallbackInfo& info, size_t at, const char* op, const AttnDims& m, AttentionArgs& a) {
  a.q_seg = buf<const int32_t>(info, at, op, tensor("qSeg", {m.B, m.T}).c_str(), prod(info, op, {m.B, m.T}), false, true);
  a.k_seg = buf<const int32_t>(info, at + 2, op, tensor("kSeg", {m.B, m.S}).c_str(), prod(info, op, {m.B, m.S}), false, true);
  if ((a.q_seg == nullptr) != (a.k_seg == nullptr)) fail(info.Env(), op, "qSeg and kSeg must be given together");
}

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  const char* op = "attentionForward";
  AttnDims m = attn_dims(info, 14, op);
  AttentionArgs a = attn_args(m);
  a.q = buf<const float>(info, 0, op, tensor("q", {m.B, m.T, m.Hq, m.D}).c_str(), m.q_elems, false);
  a.k = buf<const float>(info, 2, op, tensor("k", {m.B, m.S, m.Hkv, m.D}).c_str(), m.kv_elems, false);
  a.v = buf<const float>(info, 4, op, tensor("v", {m.B, m.S, m.Hkv, m.D}).c_str(), m.kv_elems, false);
  a.out = buf<float>(info, 6, op, tensor("out", {m.B, m.T, m.Hq, m.D}).c_str(), m.q_elems, true);
  a.lse = buf<float>(info, 8, op, tensor("lse", {m.B, m.Hq, m.T}).c_str(), m.lse_elems, true);
  attn_segments(info, 10, op, m, a);
  guarded(info, op, [&] { k::attention_fwd(a); });
  return info.Env().Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  const char* op = "attentionBackward";
  AttnDims m = attn_dims(info, 22, op);
  AttentionArgs a = attn_args(m);
  a.q = buf<const float>(info, 0, op, tensor("q", {m.B, m.T, m.Hq, m.D}).c_str(), m.q_elems, false);
  a.k = buf<const float>(info, 2, op, tensor("k", {m.B, m.S, m.Hkv, m.D}).c_str(), m.kv_elems, false);
  a.v = buf<const float>(info, 4, op, tensor("v", {m.B, m.S, m.Hkv, m.D}).c_str(), m.kv_elems, false);
  a.out = const_cast<float*>(buf<const float>(info, 6, op, tensor("out", {m.B, m.T, m.Hq, m.D}).c_str(), m.q_elems, false));
  a.lse = const_cast<float*>(buf<const float>(info, 8, op, tensor("lse", {m.B, m.Hq, m.T}).c_str(), m.lse_elems, false));
  a.dout = buf<const float>(info, 10, op, tensor("dout", {m.B, m.T, m.Hq, m.D}).c_str(), m.q_elems, false);
  a.dq = buf<float>(info, 12, op, tensor("dq", {m.B, m.T, m.Hq, m.D}).c_str(), m.q_elems, true);
  a.dk = buf<float>(info, 14, op, tensor("dk", {m.B, m.S, m.Hkv, m.D}).c_str(), m.kv_dense, true);
  a.dv = buf<float>(info, 16, op, tensor("dv", {m.B, m.S, m.Hkv, m.D}).c_str(), m.kv_dense, true);
  attn_segments(info, 18, op, m, a);
  guarded(info, op, [&] { k::attention_bwd(a); });
  return info.Env().Undefined();
}

// --- final projection + cross-entropy

struct CeDims {
  int64_t N, d, V, chunk;
};

CeDims ce_dims(const Napi::CallbackInfo& info, size_t at, const char* op) {
  CeDims m{dim(info, at, op, "N"), dim(info, at + 1, op, "d"), dim(info, at + 2, op, "V"), dim(info, at + 3, op, "chunk")};
  if (m.d < 1 || m.V < 1 || m.chunk < 1)
    fail(info.Env(), op, "d, V and chunk must be >= 1 (N=" + std::to_string(m.N) + ", d=" + std::to_string(m.d) +
                             ", V=" + std::to_string(m.V) + ", chunk=" + std::to_string(m.chunk) + ")");
  // scratch holds N * min(chunk, V) logits
  prod(info, op, {m.N, m.chunk < m.V ? m.chunk : m.V});
  return m;
}

[[noreturn]] void bad_label(const Napi::CallbackInfo& info, const char* op, const CeDims& m, const int32_t* labels, int64_t row) {
  fail(info.Env(), op, "label " + std::to_string(labels[row]) + " at row " + std::to_string(row) +
                           " is out of range for vocab size " + std::to_string(m.V) + " (-100 marks an ignored position)");
}

// [lossSum, count]: what the loss kernels hand back to JS.
Napi::Value loss_and_count(Napi::Env env, double loss_sum, int64_t count) {
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, loss_sum));
  out.Set(1u, Napi::Number::New(env, static_cast<double>(count)));
  return out;
}

Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropyForward";
  CeDims m = ce_dims(info, 10, op);
  CrossEntropyArgs a{};
  a.N = m.N;
  a.d = m.d;
  a.V = m.V;
  a.chunk = m.chunk;
  a.h = buf<const float>(info, 0, op, tensor("h", {m.N, m.d}).c_str(), prod(info, op, {m.N, m.d}), false);
  a.w = buf<const float>(info, 2, op, tensor("w", {m.V, m.d}).c_str(), prod(info, op, {m.V, m.d}), false);
  a.labels = buf<const int32_t>(info, 4, op, tensor("labels", {m.N}).c_str(), m.N, false);
  a.lse = buf<float>(info, 6, op, tensor("lse", {m.N}).c_str(), m.N, true);
  a.row_loss = buf<float>(info, 8, op, tensor("rowLoss", {m.N}).c_str(), m.N, true, true);
  a.bf16 = optional_flag(info, 14, op, "bf16");
  double loss_sum = 0;
  int64_t count = 0;
  a.loss_sum = &loss_sum;
  a.count = &count;
  int64_t bad = guarded(info, op, [&] { return k::ce_fused_fwd(a); });
  if (bad >= 0) bad_label(info, op, m, a.labels, bad);
  return loss_and_count(info.Env(), loss_sum, count);
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropyBackward";
  CeDims m = ce_dims(info, 12, op);
  CrossEntropyArgs a{};
  a.N = m.N;
  a.d = m.d;
  a.V = m.V;
  a.chunk = m.chunk;
  a.grad_scale = finite(info, 16, op, "gradScale");
  int64_t nd = prod(info, op, {m.N, m.d}), vd = prod(info, op, {m.V, m.d});
  a.h = buf<const float>(info, 0, op, tensor("h", {m.N, m.d}).c_str(), nd, false);
  a.w = buf<const float>(info, 2, op, tensor("w", {m.V, m.d}).c_str(), vd, false);
  a.labels = buf<const int32_t>(info, 4, op, tensor("labels", {m.N}).c_str(), m.N, false);
  a.lse = const_cast<float*>(buf<const float>(info, 6, op, tensor("lse", {m.N}).c_str(), m.N, false));
  a.dh = buf<float>(info, 8, op, tensor("dh", {m.N, m.d}).c_str(), nd, true);
  a.dw = buf<float>(info, 10, op, tensor("dw", {m.V, m.d}).c_str(), vd, true);
  a.bf16 = optional_flag(info, 17, op, "bf16");
  int64_t bad = guarded(info, op, [&] { return k::ce_fused_bwd(a); });
  if (bad >= 0) bad_label(info, op, m, a.labels, bad);
  return info.Env().Undefined();
}

// Training: loss, lse, dh and dw from one logits GEMM per block of rows (see CrossEntropyArgs).
Napi::Value CrossEntropySweep(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropySweep";
  CeDims m{dim(info, 14, op, "N"), dim(info, 15, op, "d"), dim(info, 16, op, "V"), dim(info, 17, op, "rowBlock")};
  if (m.d < 1 || m.V < 1 || m.chunk < 1)
    fail(info.Env(), op, "d, V and rowBlock must be >= 1 (N=" + std::to_string(m.N) + ", d=" + std::to_string(m.d) +
                             ", V=" + std::to_string(m.V) + ", rowBlock=" + std::to_string(m.chunk) + ")");
  prod(info, op, {m.chunk < m.N ? m.chunk : m.N, m.V});  // scratch: one block of logits
  CrossEntropyArgs a{};
  a.N = m.N;
  a.d = m.d;
  a.V = m.V;
  a.chunk = m.V;
  a.row_block = m.chunk;
  a.grad_scale = finite(info, 18, op, "gradScale");
  int64_t nd = prod(info, op, {m.N, m.d}), vd = prod(info, op, {m.V, m.d});
  a.h = buf<const float>(info, 0, op, tensor("h", {m.N, m.d}).c_str(), nd, false);
  a.w = buf<const float>(info, 2, op, tensor("w", {m.V, m.d}).c_str(), vd, false);
  a.labels = buf<const int32_t>(info, 4, op, tensor("labels", {m.N}).c_str(), m.N, false);
  a.lse = buf<float>(info, 6, op, tensor("lse", {m.N}).c_str(), m.N, true);
  a.row_loss = buf<float>(info, 8, op, tensor("rowLoss", {m.N}).c_str(), m.N, true, true);
  a.dh = buf<float>(info, 10, op, tensor("dh", {m.N, m.d}).c_str(), nd, true, true);
  a.dw = buf<float>(info, 12, op, tensor("dw", {m.V, m.d}).c_str(), vd, true, true);
  a.bf16 = optional_flag(info, 19, op, "bf16");
  double loss_sum = 0;
  int64_t count = 0;
  a.loss_sum = &loss_sum;
  a.count = &count;
  int64_t bad = guarded(info, op, [&] { return k::ce_fused_sweep(a); });
  if (bad >= 0) bad_label(info, op, m, a.labels, bad);
  return loss_and_count(info.Env(), loss_sum, count);
}

}  // namespace

void register_nn(Napi::Env env, Napi::Object exports) {
  exports.Set("rmsnormForward", Napi::Function::New(env, RmsnormForward, "rmsnormForward"));
  exports.Set("rmsnormBackward", Napi::Function::New(env, RmsnormBackward, "rmsnormBackward"));
  exports.Set("layernormForward", Napi::Function::New(env, LayernormForward, "layernormForward"));
  exports.Set("layernormBackward", Napi::Function::New(env, LayernormBackward, "layernormBackward"));
  exports.Set("rope", Napi::Function::New(env, Rope, "rope"));
  exports.Set("swigluForward", Napi::Function::New(env, SwigluForward, "swigluForward"));
  exports.Set("swigluBackward", Napi::Function::New(env, SwigluBackward, "swigluBackward"));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward, "crossEntropyBackward"));
  exports.Set("crossEntropySweep", Napi::Function::New(env, CrossEntropySweep, "crossEntropySweep"));
}

}  // namespace sft::glue
