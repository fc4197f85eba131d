// Runtime services shared by kernels: ISA selection, the persistent thread pool with static work splitting.
#pragma once
#include <cstdint>
#include <functional>

namespace sft {

// Instruction-set levels, from the naive reference path up. Dispatch picks the active level.
enum Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

int detected_isa();          // best level this CPU (and OS) supports
int active_isa();            // level kernels dispatch to now (<= detected)
void set_active_isa(int);    // clamps to detected; used by tests to run every path
bool cpu_has_avx512_bf16();   // AVX512_BF16 (CPUID 7.1 EAX bit 5) with AVX-512 state enabled by the OS
bool cpu_has_amx_bf16();      // AMX-TILE and AMX-BF16 (CPUID 7.0 EDX bits 24, 22), tile state enabled and granted

// Paths of the bf16 GEMM on AVX-512 CPUs (the others always round into the fp32 kernel):
// kBf16Fallback rounds into the fp32 micro-kernel; kBf16Native runs vdpbf16ps (CPUs with AVX512_BF16);
// kBf16Emulated runs the vdpbf16ps path's packing and blocking with the instruction emulated in AVX-512F,
// so tests can check that path's layout on CPUs without the instruction.
// kBf16Amx runs AMX tiles (tdpbf16ps; CPUs with AMX-BF16 whose OS grants the tile state); kBf16AmxEmulated
// runs the AMX path's packing and blocking with the tile product computed by AVX-512F.
enum Bf16Path : int { kBf16Fallback = 0, kBf16Native = 1, kBf16Emulated = 2, kBf16Amx = 3, kBf16AmxEmulated = 4 };
int bf16_path();
// Sets the path, clamped to what the CPU can run (native needs AVX512_BF16, emulated AVX-512); returns it.
int set_bf16_path(int path);

// Thread pool: one persistent pool; the calling thread works as thread 0.
int num_threads();
void set_num_threads(int n);

// Runs fn(begin, end, tid) over [0, n) split statically into contiguous chunks, one per thread
// (fewer when n is small). The same n and thread count always give the same split, so kernels
// that reduce within a chunk and combine chunks in thread order are bit-reproducible.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);
// Like parallel_for, but never splits below `grain` items per chunk (small work stays on one thread).
void parallel_for_grain(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

}  // namespace sft
