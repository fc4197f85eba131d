// Glue for the elementwise kernel family.
#include "glue/args.h"
#include "kernels/kernels.h"

namespace sft::glue {

void register_elementwise(Napi::Env env, Napi::Object exports) {}

}  // namespace sft::glue
