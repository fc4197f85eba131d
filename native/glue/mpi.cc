// Glue for the MPI collectives: buffers as bounds-checked (handle, byte offset) ranges, block sizes as JS
// arrays of one count per rank. Every export exists with or without MPI; without it they throw (mpiAvailable
// says which).
#include <vector>

#include "glue/args.h"
#include "mpi_comm.h"

namespace sft::glue {

namespace {

size_t elem_bytes(const Napi::CallbackInfo& info, size_t i, const char* op) {
  int64_t code = i64(info, i, op, "dtype");
  size_t eb = mpi::dtype_bytes(static_cast<int>(code));
  if (eb == 0) fail(info.Env(), op, "unknown dtype code " + std::to_string(code) + " (float32 0, int32 3, float64 4)");
  return eb;
}

int reduce_op(const Napi::CallbackInfo& info, size_t i, const char* op) {
  int64_t code = i64(info, i, op, "op");
  if (code != mpi::kSum && code != mpi::kMax && code != mpi::kMin) fail(info.Env(), op, "unknown reduce op " + std::to_string(code));
  return static_cast<int>(code);
}

mpi::World world(const Napi::CallbackInfo& info, const char* op) {
  mpi::World w;
  std::string err;
  if (!mpi::init(&w, &err)) fail(info.Env(), op, err);
  return w;
}

// One count per rank, from the JS array at info[i]; returns them and their sum.
std::vector<int64_t> block_counts(const Napi::CallbackInfo& info, size_t i, const char* op, int size, int64_t* total) {
  if (i >= info.Length() || !info[i].IsArray()) fail(info.Env(), op, "argument 'counts' must be an array");
  Napi::Array a = info[i].As<Napi::Array>();
  if (a.Length() != static_cast<uint32_t>(size)) {
    fail(info.Env(), op, "counts has " + std::to_string(a.Length()) + " entries for a world of " + std::to_string(size) + " ranks");
  }
  std::vector<int64_t> counts(static_cast<size_t>(size));
  *total = 0;
  for (uint32_t r = 0; r < a.Length(); ++r) {
    Napi::Value v = a.Get(r);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= double(int64_t(1) << 40)) || d != static_cast<double>(static_cast<int64_t>(d))) {
      fail(info.Env(), op, "counts[" + std::to_string(r) + "] must be a non-negative integer");
    }
    counts[r] = static_cast<int64_t>(d);
    *total += counts[r];
  }
  return counts;
}

void check(const Napi::CallbackInfo& info, const char* op, bool ok, const std::string& err) {
  if (!ok) fail(info.Env(), op, err);
}

Napi::Value Available(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), mpi::available()); }

Napi::Value Init(const Napi::CallbackInfo& info) {
  mpi::World w = world(info, "mpiInit");
  Napi::Array out = Napi::Array::New(info.Env(), 4);
  out.Set(0u, Napi::Number::New(info.Env(), w.rank));
  out.Set(1u, Napi::Number::New(info.Env(), w.size));
  out.Set(2u, Napi::Number::New(info.Env(), w.local_rank));
  out.Set(3u, Napi::Number::New(info.Env(), w.local_size));
  return out;
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  std::string err;
  check(info, "mpiFinalize", mpi::finalize(&err), err);
  return info.Env().Undefined();
}

// mpiAllReduce(h, off, count, dtype, op): in place.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  const char* op = "mpiAllReduce";
  int64_t n = dim(info, 2, op, "count");
  size_t eb = elem_bytes(info, 3, op);
  int rop = reduce_op(info, 4, op);
  uint8_t* p = buf<uint8_t>(info, 0, op, "buffer", n, true, false, eb);
  world(info, op);
  std::string err;
  check(info, op, mpi::all_reduce(p, n, static_cast<int>(i64(info, 3, op, "dtype")), rop, &err), err);
  return info.Env().Undefined();
}

// mpiReduceScatter(send, sendOff, recv, recvOff, counts, dtype, op): send holds sum(counts) elements;
// recv gets this rank's reduced block (counts[rank]). The two ranges must not overlap.
Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
  const char* op = "mpiReduceScatter";
  mpi::World w = world(info, op);
  int64_t total = 0;
  std::vector<int64_t> counts = block_counts(info, 4, op, w.size, &total);
  size_t eb = elem_bytes(info, 5, op);
  int rop = reduce_op(info, 6, op);
  int64_t mine = counts[static_cast<size_t>(w.rank)];
  uint8_t* s = buf<uint8_t>(info, 0, op, "send", total, false, false, eb);
  uint8_t* r = buf<uint8_t>(info, 2, op, "recv", mine, true, false, eb);
  if (s < r + mine * eb && r < s + total * eb) fail(info.Env(), op, "send and recv ranges overlap");
  std::string err;
  check(info, op, mpi::reduce_scatter(s, r, counts.data(), static_cast<int>(i64(info, 5, op, "dtype")), rop, &err), err);
  return info.Env().Undefined();
}

// mpiAllGather(h, off, counts, dtype): in place; rank r's block is at sum(counts[:r]).
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  const char* op = "mpiAllGather";
  mpi::World w = world(info, op);
  int64_t total = 0;
  std::vector<int64_t> counts = block_counts(info, 2, op, w.size, &total);
  size_t eb = elem_bytes(info, 3, op);
  uint8_t* p = buf<uint8_t>(info, 0, op, "buffer", total, true, false, eb);
  std::string err;
  check(info, op, mpi::all_gather(p, counts.data(), static_cast<int>(i64(info, 3, op, "dtype")), &err), err);
  return info.Env().Undefined();
}

// mpiBroadcast(h, off, count, dtype, root): in place.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  const char* op = "mpiBroadcast";
  int64_t n = dim(info, 2, op, "count");
  size_t eb = elem_bytes(info, 3, op);
  int64_t root = i64(info, 4, op, "root");
  uint8_t* p = buf<uint8_t>(info, 0, op, "buffer", n, true, false, eb);
  world(info, op);
  std::string err;
  check(info, op, mpi::broadcast(p, n, static_cast<int>(i64(info, 3, op, "dtype")), static_cast<int>(root), &err), err);
  return info.Env().Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  world(info, "mpiBarrier");
  std::string err;
  check(info, "mpiBarrier", mpi::barrier(&err), err);
  return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  int64_t code = i64(info, 0, "mpiAbort", "code");
  mpi::abort(static_cast<int>(code));
}

}  // namespace

void register_mpi(Napi::Env env, Napi::Object exports) {
  exports.Set("mpiAvailable", Napi::Function::New(env, Available, "mpiAvailable"));
  exports.Set("mpiInit", Napi::Function::New(env, Init, "mpiInit"));
  exports.Set("mpiFinalize", Napi::Function::New(env, Finalize, "mpiFinalize"));
  exports.Set("mpiAllReduce", Napi::Function::New(env, AllReduce, "mpiAllReduce"));
  exports.Set("mpiReduceScatter", Napi::Function::New(env, ReduceScatter, "mpiReduceScatter"));
  exports.Set("mpiAllGather", Napi::Function::New(env, AllGather, "mpiAllGather"));
  exports.Set("mpiBroadcast", Napi::Function::New(env, Broadcast, "mpiBroadcast"));
  exports.Set("mpiBarrier", Napi::Function::New(env, Barrier, "mpiBarrier"));
  exports.Set("mpiAbort", Napi::Function::New(env, Abort, "mpiAbort"));
}

}  // namespace sft::glue
