// MPI collectives over raw buffers: lazy MPI_Init_thread, node-local ranks, in-place all-reduce, block
// reduce-scatter, all-gather, broadcast; stubs when built without MPI. Called only from Node's main thread.
#include "mpi_comm.h"

#include <cstdlib>
#include <vector>

#ifdef SFT_HAVE_MPI
// The C interface only: no MPI C++ bindings (they would need libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <dlfcn.h>
#include <mpi.h>
#endif

namespace sft::mpi {

size_t dtype_bytes(int dtype) {
  switch (dtype) {
    case kF32: return 4;
    case kI32: return 4;
    case kF64: return 8;
    default: return 0;
  }
}

#ifdef SFT_HAVE_MPI

namespace {

World g_world;
bool g_init = false;

// MPI counts are ints: larger transfers go in chunks of this many elements.
constexpr int64_t kChunk = int64_t(1) << 30;

bool check(int rc, const char* what, std::string* err) {
  if (rc == MPI_SUCCESS) return true;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  *err = std::string(what) + " failed: " + std::string(msg, static_cast<size_t>(len));
  return false;
}

bool ready(std::string* err) {
  if (g_init) return true;
  World w;
  return init(&w, err);
}

MPI_Datatype mpi_type(int dtype) {
  switch (dtype) {
    case kI32: return MPI_INT32_T;
    case kF64: return MPI_DOUBLE;
    default: return MPI_FLOAT;
  }
}

MPI_Op mpi_op(int op) {
  switch (op) {
    case kMax: return MPI_MAX;
    case kMin: return MPI_MIN;
    default: return MPI_SUM;
  }
}

// Block sizes and displacements as MPI's ints; false when a block or the total does not fit.
bool int_counts(const int64_t* counts, std::vector<int>* c, std::vector<int>* d, std::string* err) {
  int64_t at = 0;
  for (int r = 0; r < g_world.size; ++r) {
    if (counts[r] < 0 || counts[r] > INT32_MAX || at > INT32_MAX) {
      *err = "block of rank " + std::to_string(r) + " (" + std::to_string(counts[r]) + " elements at " + std::to_string(at) +
             ") exceeds MPI's int range";
      return false;
    }
    c->push_back(static_cast<int>(counts[r]));
    d->push_back(static_cast<int>(at));
    at += counts[r];
  }
  return true;
}

}  // namespace

bool available() { return true; }
bool initialized() { return g_init; }

bool init(World* out, std::string* err) {
  if (g_init) {
    *out = g_world;
    return true;
  }
  // Node loads addons with RTLD_LOCAL; Open MPI's plugins resolve symbols of libmpi at dlopen time, so
  // promote the already-loaded libmpi to global visibility first (as mpi4py does).
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) && info.dli_fname) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  }
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    int provided = 0;
    // Only the main thread calls MPI; the kernel thread pool never does.
    if (!check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", err)) return false;
  }
  // Errors come back as codes (turned into JS exceptions) instead of aborting the job inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
  MPI_Comm node;
  if (!check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), "MPI_Comm_split_type", err)) return false;
  MPI_Comm_rank(node, &g_world.local_rank);
  MPI_Comm_size(node, &g_world.local_size);
  MPI_Comm_free(&node);
  g_init = true;
  *out = g_world;
  return true;
}

bool finalize(std::string* err) {
  if (!g_init) return true;
  g_init = false;
  int done = 0;
  MPI_Finalized(&done);
  if (done) return true;
  return check(MPI_Finalize(), "MPI_Finalize", err);
}

bool all_reduce(void* buf, int64_t count, int dtype, int op, std::string* err) {
  if (!ready(err)) return false;
  char* p = static_cast<char*>(buf);
  const size_t eb = dtype_bytes(dtype);
  for (int64_t at = 0; at < count; at += kChunk) {
    const int n = static_cast<int>(count - at < kChunk ? count - at : kChunk);
    if (!check(MPI_Allreduce(MPI_IN_PLACE, p + at * eb, n, mpi_type(dtype), mpi_op(op), MPI_COMM_WORLD), "MPI_Allreduce", err)) return false;
  }
  return true;
}

bool reduce_scatter(const void* send, void* recv, const int64_t* counts, int dtype, int op, std::string* err) {
  if (!ready(err)) return false;
  std::vector<int> c, d;
  if (!int_counts(counts, &c, &d, err)) return false;
  bool equal = true;
  for (int x : c) equal = equal && x == c[0];
  if (equal) {
    return check(MPI_Reduce_scatter_block(send, recv, c[0], mpi_type(dtype), mpi_op(op), MPI_COMM_WORLD), "MPI_Reduce_scatter_block", err);
  }
  return check(MPI_Reduce_scatter(send, recv, c.data(), mpi_type(dtype), mpi_op(op), MPI_COMM_WORLD), "MPI_Reduce_scatter", err);
}

bool all_gather(void* buf, const int64_t* counts, int dtype, std::string* err) {
  if (!ready(err)) return false;
  std::vector<int> c, d;
  if (!int_counts(counts, &c, &d, err)) return false;
  return check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c.data(), d.data(), mpi_type(dtype), MPI_COMM_WORLD),
               "MPI_Allgatherv", err);
}

bool broadcast(void* buf, int64_t count, int dtype, int root, std::string* err) {
  if (!ready(err)) return false;
  if (root < 0 || root >= g_world.size) {
    *err = "root " + std::to_string(root) + " is not a rank of a world of " + std::to_string(g_world.size);
    return false;
  }
  char* p = static_cast<char*>(buf);
  const size_t eb = dtype_bytes(dtype);
  for (int64_t at = 0; at < count; at += kChunk) {
    const int n = static_cast<int>(count - at < kChunk ? count - at : kChunk);
    if (!check(MPI_Bcast(p + at * eb, n, mpi_type(dtype), root, MPI_COMM_WORLD), "MPI_Bcast", err)) return false;
  }
  return true;
}

bool barrier(std::string* err) {
  if (!ready(err)) return false;
  return check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", err);
}

void abort(int code) {
  int inited = 0, done = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&done);
  if (inited && !done) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

#else  // built without MPI

namespace {
bool missing(std::string* err) {
  *err = "sftkit was built without MPI; install OpenMPI (e.g. apt-get install openmpi-bin libopenmpi-dev) and rebuild (npm run build)";
  return false;
}
}  // namespace

bool available() { return false; }
bool initialized() { return false; }
bool init(World*, std::string* err) { return missing(err); }
bool finalize(std::string*) { return true; }
bool all_reduce(void*, int64_t, int, int, std::string* err) { return missing(err); }
bool reduce_scatter(const void*, void*, const int64_t*, int, int, std::string* err) { return missing(err); }
bool all_gather(void*, const int64_t*, int, std::string* err) { return missing(err); }
bool broadcast(void*, int64_t, int, int, std::string* err) { return missing(err); }
bool barrier(std::string* err) { return missing(err); }
void abort(int code) { std::_Exit(code); }

#endif

}  // namespace sft::mpi
