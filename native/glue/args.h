// Argument readers for the N-API glue: numbers, flags, and buffers given as (handle, byte offset)
// pairs that are looked up in the handle table and bounds-checked before any kernel touches them.
#pragma once
#include <napi.h>
#include <cstdint>
#include <string>

#include "memory.h"

namespace sft::glue {

[[noreturn]] inline void fail(Napi::Env env, const std::string& op, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, op + ": " + msg);
  e.Set("code", Napi::String::New(env, "ESFTKIT_NATIVE"));
  throw e;
}

inline int64_t i64(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(info.Env(), op, std::string("argument '") + name + "' must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) fail(info.Env(), op, std::string("argument '") + name + "' must be an integer");
  return static_cast<int64_t>(d);
}

inline int64_t dim(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  int64_t v = i64(info, i, op, name);
  if (v < 0 || v > (int64_t(1) << 40)) fail(info.Env(), op, std::string("size '") + name + "' out of range: " + std::to_string(v));
  return v;
}

inline double f64(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(info.Env(), op, std::string("argument '") + name + "' must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline bool flag(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (i >= info.Length() || !info[i].IsBoolean()) fail(info.Env(), op, std::string("argument '") + name + "' must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

// A trailing boolean that callers may leave out (false when absent or undefined).
inline bool optional_flag(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (i >= info.Length() || info[i].IsUndefined()) return false;
  return flag(info, i, op, name);
}

// A buffer argument: handle at info[i], byte offset at info[i + 1]. `elems` elements of T must fit.
// Handle 0 means "absent" when `optional`, and yields nullptr.
template <typename T>
T* buf(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name, int64_t elems, bool write,
       bool optional = false, size_t elem_bytes = sizeof(T)) {
  int64_t id = i64(info, i, op, name);
  int64_t off = i64(info, i + 1, op, name);
  if (id == 0 && optional) return nullptr;
  size_t bytes = 0;
  bool readonly = false;
  uint8_t* base = handle_ptr(id, &bytes, &readonly);
  if (!base && !(bytes == 0 && elems == 0)) fail(info.Env(), op, std::string("buffer '") + name + "' is not a live native buffer (freed or invalid handle " + std::to_string(id) + ")");
  if (write && readonly) fail(info.Env(), op, std::string("buffer '") + name + "' is read-only (a file mapping)");
  if (off < 0 || off % static_cast<int64_t>(elem_bytes) != 0) fail(info.Env(), op, std::string("buffer '") + name + "' has a misaligned offset " + std::to_string(off));
  if (elems < 0) fail(info.Env(), op, std::string("buffer '") + name + "' has a negative extent");
  uint64_t need = static_cast<uint64_t>(off) + static_cast<uint64_t>(elems) * elem_bytes;
  if (need > bytes) fail(info.Env(), op, std::string("buffer '") + name + "' too small: needs " + std::to_string(need) + " bytes, has " + std::to_string(bytes));
  return reinterpret_cast<T*>(base + off);
}

// Elements spanned by a strided view: 1 + sum((shape[i] - 1) * stride[i]), 0 when any dim is 0.
// Strides must be non-negative.
inline int64_t strided_extent(const int64_t* shape, const int64_t* strides, int ndim) {
  int64_t last = 0;
  for (int i = 0; i < ndim; ++i) {
    if (shape[i] == 0) return 0;
    last += (shape[i] - 1) * strides[i];
  }
  return last + 1;
}

// Reads a JS array of integers into out (at most max entries); returns the count.
inline int int_list(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name, int64_t* out, int max) {
  if (i >= info.Length() || !info[i].IsArray()) fail(info.Env(), op, std::string("argument '") + name + "' must be an array");
  Napi::Array a = info[i].As<Napi::Array>();
  if (a.Length() > static_cast<uint32_t>(max)) fail(info.Env(), op, std::string("argument '") + name + "' has too many entries");
  for (uint32_t j = 0; j < a.Length(); ++j) {
    Napi::Value v = a.Get(j);
    if (!v.IsNumber()) fail(info.Env(), op, std::string("argument '") + name + "' must hold numbers");
    out[j] = static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
  }
  return static_cast<int>(a.Length());
}

// Each family registers its exports here.
void register_runtime(Napi::Env env, Napi::Object exports);
void register_gemm(Napi::Env env, Napi::Object exports);
void register_elementwise(Napi::Env env, Napi::Object exports);
void register_nn(Napi::Env env, Napi::Object exports);
void register_mpi(Napi::Env env, Napi::Object exports);
void register_quant(Napi::Env env, Napi::Object exports);

}  // namespace sft::glue
