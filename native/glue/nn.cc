// Glue for the nn kernel family.
#include "glue/args.h"
#include "kernels/kernels.h"

namespace sft::glue {

void register_nn(Napi::Env env, Napi::Object exports) {}

}  // namespace sft::glue
