// The addon's entry point: gathers every family's exports.
#include <napi.h>

#include "glue/args.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  sft::glue::register_runtime(env, exports);
  sft::glue::register_gemm(env, exports);
  sft::glue::register_elementwise(env, exports);
  sft::glue::register_nn(env, exports);
  sft::glue::register_mpi(env, exports);
  sft::glue::register_quant(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(sftkit, Init)
