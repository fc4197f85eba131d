// The narrow-GEMM path of the fp32 GEMM (gemm_narrow.cc), compiled once per ISA like the rest of kernels/simd/.
#pragma once
#include "kernels/kernels.h"
#include "kernels/simd/simd.h"

namespace sft {
namespace SFT_NS {

// Runs g when C is narrow (at most a few vectors wide, or, with op(A) transposed, that few rows tall) and
// long and deep, as a LoRA adapter's GEMMs are; returns false (doing nothing) for every other GEMM.
bool narrow_gemm(const GemmArgs& g);

}  // namespace SFT_NS
}  // namespace sft
