// MPI collectives over raw buffers (named mpi_comm so it never shadows the system <mpi.h>). Compiled to stubs that report
// "not available" when the addon was built without MPI (SFT_HAVE_MPI unset), so the build never needs it.
#pragma once
#include <cstdint>
#include <string>

namespace sft::mpi {

// Element types understood by the collectives (codes shared with src/backend/binding.ts MPI_DTYPE).
enum DType : int { kF32 = 0, kI32 = 3, kF64 = 4 };
// Reduction ops (codes shared with MPI_OP).
enum Op : int { kSum = 0, kMax = 1, kMin = 2 };

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // rank among the processes of this node
  int local_size = 1;
};

bool available();                 // built with MPI
bool initialized();               // init() succeeded and finalize() not yet called
size_t dtype_bytes(int dtype);    // 0 for an unknown code

// Each returns false and sets *err on failure. init is idempotent.
bool init(World* out, std::string* err);
bool finalize(std::string* err);
// In place: buf (count) = op over ranks of buf.
bool all_reduce(void* buf, int64_t count, int dtype, int op, std::string* err);
// send (sum of counts) reduced with op; this rank's block (counts[rank], starting at sum(counts[:rank])) lands in recv.
bool reduce_scatter(const void* send, void* recv, const int64_t* counts, int dtype, int op, std::string* err);
// In place: each rank's block of buf (counts[r] at displacement sum(counts[:r])) is sent to every rank.
bool all_gather(void* buf, const int64_t* counts, int dtype, std::string* err);
bool broadcast(void* buf, int64_t count, int dtype, int root, std::string* err);
bool barrier(std::string* err);
// Ends every rank of the job with this exit code (never returns).
[[noreturn]] void abort(int code);

}  // namespace sft::mpi
