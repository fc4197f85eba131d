// Glue for the gemm kernel family.
#include "glue/args.h"
#include "kernels/kernels.h"

namespace sft::glue {

void register_gemm(Napi::Env env, Napi::Object exports) {}

}  // namespace sft::glue
