// Glue for runtime services: memory handles, copies between JS typed arrays and native buffers,
// mmap, allocator statistics, the thread pool and ISA selection.
#include <cstring>

#include "glue/args.h"
#include "memory.h"
#include "runtime.h"

namespace sft::glue {

namespace {

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  int64_t bytes = dim(info, 0, "alloc", "bytes");
  bool zero = flag(info, 1, "alloc", "zero");
  try {
    return Napi::Number::New(info.Env(), static_cast<double>(handle_alloc(static_cast<size_t>(bytes), zero)));
  } catch (const std::exception& e) {
    fail(info.Env(), "alloc", e.what());
  }
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  int64_t id = i64(info, 0, "free", "handle");
  try {
    handle_free(id);
  } catch (const std::exception& e) {
    fail(info.Env(), "free", e.what());
  }
  return info.Env().Undefined();
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) fail(info.Env(), "mmap", "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  size_t size = 0;
  std::string error;
  int64_t id = handle_mmap(path, &size, &error);
  if (!id) fail(info.Env(), "mmap", error);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(id)));
  out.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(size)));
  return out;
}

// copy(handle, byteOffset, typedArray, toNative): copies the typed array's bytes in or out.
Napi::Value Copy(const Napi::CallbackInfo& info, bool to_native) {
  const char* op = to_native ? "write" : "read";
  if (info.Length() < 3 || !info[2].IsTypedArray()) fail(info.Env(), op, "third argument must be a typed array");
  Napi::TypedArray ta = info[2].As<Napi::TypedArray>();
  size_t n = ta.ByteLength();
  uint8_t* js = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  uint8_t* p = buf<uint8_t>(info, 0, op, "buffer", static_cast<int64_t>(n), to_native);
  if (n == 0) return info.Env().Undefined();
  if (to_native) std::memcpy(p, js, n);
  else std::memcpy(js, p, n);
  return info.Env().Undefined();
}

Napi::Value Write(const Napi::CallbackInfo& info) { return Copy(info, true); }
Napi::Value Read(const Napi::CallbackInfo& info) { return Copy(info, false); }

Napi::Value Size(const Napi::CallbackInfo& info) {
  int64_t id = i64(info, 0, "size", "handle");
  size_t bytes = 0;
  bool ro = false;
  if (!handle_ptr(id, &bytes, &ro) && bytes == 0) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), static_cast<double>(bytes));
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  MemStats s = mem_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("liveBytes", static_cast<double>(s.live_bytes));
  o.Set("peakBytes", static_cast<double>(s.peak_bytes));
  o.Set("cachedBytes", static_cast<double>(s.cached_bytes));
  o.Set("osAllocs", static_cast<double>(s.os_allocs));
  o.Set("liveBlocks", static_cast<double>(s.live_blocks));
  o.Set("mappedBytes", static_cast<double>(s.mapped_bytes));
  return o;
}

Napi::Value ResetPeak(const Napi::CallbackInfo& info) {
  mem_reset_peak();
  return info.Env().Undefined();
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  mem_empty_cache();
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  int64_t n = i64(info, 0, "setThreads", "n");
  if (n < 1 || n > 1024) fail(info.Env(), "setThreads", "thread count must be in 1..1024, got " + std::to_string(n));
  set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value DetectedIsa(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), detected_isa()); }
Napi::Value GetIsa(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), active_isa()); }
Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  set_active_isa(static_cast<int>(i64(info, 0, "setIsa", "isa")));
  return Napi::Number::New(info.Env(), active_isa());
}
Napi::Value HasBf16(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), cpu_has_avx512_bf16()); }
Napi::Value HasAmx(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), cpu_has_amx_bf16()); }
Napi::Value GetBf16Path(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), bf16_path()); }
Napi::Value SetBf16Path(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), set_bf16_path(static_cast<int>(i64(info, 0, "setBf16Path", "path"))));
}

}  // namespace

void register_runtime(Napi::Env env, Napi::Object exports) {
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("free", Napi::Function::New(env, Free));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("write", Napi::Function::New(env, Write));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("size", Napi::Function::New(env, Size));
  exports.Set("memStats", Napi::Function::New(env, Stats));
  exports.Set("resetPeak", Napi::Function::New(env, ResetPeak));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("detectedIsa", Napi::Function::New(env, DetectedIsa));
  exports.Set("getIsa", Napi::Function::New(env, GetIsa));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("hasAvx512Bf16", Napi::Function::New(env, HasBf16));
  exports.Set("hasAmxBf16", Napi::Function::New(env, HasAmx));
  exports.Set("getBf16Path", Napi::Function::New(env, GetBf16Path));
  exports.Set("setBf16Path", Napi::Function::New(env, SetBf16Path));
}

}  // namespace sft::glue
