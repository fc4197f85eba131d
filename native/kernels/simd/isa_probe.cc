// Compiled once per ISA: reports which vector width this copy of the SIMD kernels was built for.
#include "kernels/simd/simd.h"

namespace sft {
namespace SFT_NS {
int simd_lanes() { return simd::W; }
}  // namespace SFT_NS
}  // namespace sft
