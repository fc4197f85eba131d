// ISA detection and the persistent thread pool (static splitting, no work stealing).
#include "runtime.h"

#include <immintrin.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <sched.h>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sft {

namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

int detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return kScalar;
  bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29);
  if (!osxsave) return kScalar;
  uint64_t xcr = xgetbv0();
  bool ymm = (xcr & 0x6) == 0x6, zmm = (xcr & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return kScalar;
  bool avx2 = b & (1u << 5);
  bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  if (zmm && avx512f && avx512dq && avx512bw && avx512vl && avx2 && fma && f16c) return kAvx512;
  if (ymm && avx2 && fma && f16c) return kAvx2;
  return kScalar;
}

// SFTKIT_ISA (scalar | avx2 | avx512 | avx512_bf16) caps what the CPU is taken to have, so that one machine
// can run the whole suite as an AVX2-only CPU or as an AVX-512 CPU without AVX512_BF16 would. Unset, empty
// or unknown: everything detected.
int isa_cap() {
  const char* env = std::getenv("SFTKIT_ISA");
  const std::string v = env ? env : "";
  if (v == "scalar") return 0;
  if (v == "avx2") return 1;
  if (v == "avx512") return 2;
  return 3;
}
const int g_cap = isa_cap();

int capped_detect() {
  const int isa = detect();
  return isa < g_cap ? isa : (g_cap < kAvx512 ? g_cap : kAvx512);
}

const int g_detected = capped_detect();
std::atomic<int> g_active{g_detected};

int default_threads() {
  if (const char* env = std::getenv("SFTKIT_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  int cores = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int>(std::thread::hardware_concurrency());
  int local = 1;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    if (const char* env = std::getenv(var)) {
      int n = std::atoi(env);
      if (n > 0) { local = n; break; }
    }
  }
  int n = cores / local;
  return n < 1 ? 1 : n;
}

// Workers wait on a generation counter; each job is split statically by thread index. A training step or a
// decode step calls the pool hundreds of times, back to back: putting a worker to sleep on the condition
// variable and waking it (a futex round trip, a context switch on a VM) cost ~50 us per call, more than a
// LoRA adapter's GEMM takes. So a worker that finished a job, and the caller waiting for the workers, first
// watch the counters for a while (kSpinPauses pause instructions, then kSpinYields yields of the core to
// anything else runnable), and only then block. A busy loop of kernels never sleeps; an idle pool sleeps
// after ~0.1-0.2 ms.
constexpr int kSpinPauses = 2000;
constexpr int kSpinYields = 200;

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return size_; }

  void resize(int n) {
    if (n < 1) n = 1;
    stop();
    size_ = n;
    quit_ = false;
    // New workers start at the current generation, or they would rerun the last (finished) job.
    for (int t = 1; t < n; ++t) workers_.emplace_back([this, t, g = generation_.load()] { loop(t, g); });
  }

  void run(int parts, const std::function<void(int)>& task) {
    if (parts <= 1 || size_ == 1) {
      for (int p = 0; p < parts; ++p) task(p);
      return;
    }
    std::lock_guard<std::mutex> serial(run_mutex_);
    {
      // Published under the mutex, so a worker about to block either sees the new generation or is
      // already waiting when notified.
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      parts_ = parts;
      pending_.store(size_ - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (int p = 0; p < parts; p += size_) task(p);
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    task_ = nullptr;
  }

 private:
  // Watches `ready` for a while; true as soon as it holds.
  template <class F>
  static bool spin_until(F ready) {
    for (int i = 0; i < kSpinPauses; ++i) {
      if (ready()) return true;
      _mm_pause();
    }
    for (int i = 0; i < kSpinYields; ++i) {
      if (ready()) return true;
      std::this_thread::yield();
    }
    return ready();
  }

  void loop(int t, uint64_t seen) {
    for (;;) {
      auto fresh = [&] { return quit_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(fresh)) {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, fresh);
      }
      if (quit_.load(std::memory_order_acquire)) return;
      const std::function<void(int)>* task;
      int parts;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        seen = generation_.load(std::memory_order_relaxed);
        task = task_;
        parts = parts_;
      }
      for (int p = t; p < parts; p += size_) (*task)(p);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // The caller may be blocked: notify under the mutex, so the wake-up cannot fall between its check
        // and its wait.
        std::lock_guard<std::mutex> lock(mutex_);
        done_cv_.notify_one();
      }
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int size_ = 1;
  std::atomic<bool> quit_{false};
  std::vector<std::thread> workers_;
  std::mutex mutex_, run_mutex_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* task_ = nullptr;
  int parts_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
};

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int detected_isa() { return g_detected; }
int active_isa() { return g_active.load(std::memory_order_relaxed); }
void set_active_isa(int isa) { g_active = isa < 0 ? 0 : (isa > g_detected ? g_detected : isa); }

bool cpu_has_avx512_bf16() {
  unsigned a, b, c, d;
  if (g_detected < kAvx512 || g_cap <= kAvx512) return false;   // also covers the OS saving zmm state (XCR0)
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return a & (1u << 5);
}

namespace {
// AMX needs the CPU's tiles (CPUID 7.0 EDX: AMX-BF16 bit 22, AMX-TILE bit 24), the OS saving their state
// (XCR0 bits 17 and 18) and, on Linux, the process's request for the tile data state (arch_prctl
// ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), granted once for all its threads.
bool detect_amx_bf16() {
  unsigned a, b, c, d;
  if (g_cap <= kAvx512 || detected_isa() < kAvx512) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;
  if ((xgetbv0() & 0x60000) != 0x60000) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

// CPUID leaf 0 says "AuthenticAMD".
bool cpu_is_amd() {
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;
}

// The default bf16 GEMM path. SFTKIT_BF16_GEMM=vdpbf16ps|fallback chooses; SFTKIT_NO_AVX512BF16 (non-empty,
// not "0") means fallback. Otherwise vdpbf16ps where it was measured to be the faster kernel: on AMD (bf16
// training 1.6-1.7x fp32 on an EPYC family 25 model 17); on Intel it is slower than the fp32 kernel on rounded
// operands (a Xeon family 6 model 167: bf16 GEMM peak 219 vs 343 GFLOP/s fp32, training M at 874 tok/s on
// vdpbf16ps vs 1,207 on the fallback; docs/ARCHITECTURE.md).
// AMX, where the CPU has it, is the fastest of all (Intel's bf16 engine: a 16 x 16 x 32 tile product per
// instruction); SFTKIT_BF16_GEMM=amx asks for it explicitly.
int initial_bf16_path() {
  const char* choice = std::getenv("SFTKIT_BF16_GEMM");
  const std::string want = choice ? choice : "";
  if (want == "fallback") return kBf16Fallback;
  if (want == "vdpbf16ps") return cpu_has_avx512_bf16() ? kBf16Native : kBf16Fallback;
  if (want == "amx") return cpu_has_amx_bf16() ? kBf16Amx : kBf16Fallback;
  const char* env = std::getenv("SFTKIT_NO_AVX512BF16");
  const bool off = env && *env && std::string(env) != "0";
  if (off) return kBf16Fallback;
  if (cpu_has_amx_bf16()) return kBf16Amx;
  return cpu_has_avx512_bf16() && cpu_is_amd() ? kBf16Native : kBf16Fallback;
}
std::atomic<int> g_bf16_path{-1};
}  // namespace

int bf16_path() {
  int p = g_bf16_path.load(std::memory_order_relaxed);
  if (p < 0) {
    p = initial_bf16_path();
    g_bf16_path.store(p, std::memory_order_relaxed);
  }
  return p;
}

bool cpu_has_amx_bf16() {
  static const bool has = detect_amx_bf16();
  return has;
}

int set_bf16_path(int path) {
  int p = kBf16Fallback;
  if (path == kBf16Native && cpu_has_avx512_bf16()) p = kBf16Native;
  if (path == kBf16Emulated && g_detected >= kAvx512) p = kBf16Emulated;
  if (path == kBf16Amx && cpu_has_amx_bf16()) p = kBf16Amx;
  if (path == kBf16AmxEmulated && g_detected >= kAvx512) p = kBf16AmxEmulated;
  g_bf16_path.store(p, std::memory_order_relaxed);
  return p;
}

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n); }

void parallel_for_grain(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t threads = pool().size();
  int64_t parts = (n + grain - 1) / grain;
  if (parts > threads) parts = threads;
  if (parts <= 1) {
    fn(0, n, 0);
    return;
  }
  pool().run(static_cast<int>(parts), [&](int p) {
    int64_t begin = n * p / parts, end = n * (p + 1) / parts;
    if (begin < end) fn(begin, end, p);
  });
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) { parallel_for_grain(n, 1, fn); }

}  // namespace sft
