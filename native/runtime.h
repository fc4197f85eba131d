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
bool cpu_has_avx512_bf16();

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
