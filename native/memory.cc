// Caching allocator with power-of-two-ish size buckets, plus the handle table shared with JavaScript.
#include "memory.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sft {

namespace {

constexpr size_t kAlign = 64;

// Buckets: multiples of 64 B up to 4 KiB; above that, 4 steps per power of two (at most 25% slack).
size_t bucket_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= 4096) return (bytes + kAlign - 1) / kAlign * kAlign;
  size_t p = 4096;
  while (p * 2 < bytes) p *= 2;
  size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

struct Block {
  uint8_t* ptr;
  size_t bytes;         // requested size
  size_t bucket;        // pooled bucket size (0 for mappings)
  size_t map_len;       // mapping length (0 for pooled)
  bool readonly;
};

std::mutex g_mutex;
std::unordered_map<size_t, std::vector<void*>> g_free;   // bucket -> cached blocks
std::unordered_map<int64_t, Block> g_handles;
int64_t g_next_id = 1;
MemStats g_stats{0, 0, 0, 0, 0, 0};

void* pool_alloc_locked(size_t bytes, size_t* bucket_out) {
  size_t b = bucket_size(bytes);
  *bucket_out = b;
  auto it = g_free.find(b);
  void* p = nullptr;
  if (it != g_free.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    g_stats.cached_bytes -= static_cast<int64_t>(b);
  } else {
    p = std::aligned_alloc(kAlign, b);
    if (!p) {
      // Give the cache back to the OS and try once more before failing.
      for (auto& kv : g_free)
        for (void* q : kv.second) std::free(q);
      g_free.clear();
      g_stats.cached_bytes = 0;
      p = std::aligned_alloc(kAlign, b);
      if (!p) throw std::runtime_error("out of memory allocating " + std::to_string(bytes) + " bytes");
    }
    g_stats.os_allocs += 1;
  }
  g_stats.live_bytes += static_cast<int64_t>(b);
  if (g_stats.live_bytes > g_stats.peak_bytes) g_stats.peak_bytes = g_stats.live_bytes;
  return p;
}

void pool_free_locked(void* p, size_t bucket) {
  g_free[bucket].push_back(p);
  g_stats.live_bytes -= static_cast<int64_t>(bucket);
  g_stats.cached_bytes += static_cast<int64_t>(bucket);
}

}  // namespace

void* pool_alloc(size_t bytes, size_t* bucket_bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  return pool_alloc_locked(bytes, bucket_bytes);
}

void pool_free(void* p, size_t bucket_bytes) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  pool_free_locked(p, bucket_bytes);
}

int64_t handle_alloc(size_t bytes, bool zero) {
  size_t bucket;
  void* p;
  int64_t id;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    p = pool_alloc_locked(bytes, &bucket);
    id = g_next_id++;
    g_handles.emplace(id, Block{static_cast<uint8_t*>(p), bytes, bucket, 0, false});
    g_stats.live_blocks += 1;
  }
  if (zero) std::memset(p, 0, bytes);
  return id;
}

int64_t handle_mmap(const std::string& path, size_t* size, std::string* error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = std::string("cannot open ") + path + ": " + std::strerror(errno);
    return 0;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    *error = std::string("cannot stat ") + path + ": " + std::strerror(errno);
    ::close(fd);
    return 0;
  }
  size_t len = static_cast<size_t>(st.st_size);
  void* p = nullptr;
  if (len > 0) {
    p = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      *error = std::string("cannot mmap ") + path + ": " + std::strerror(errno);
      ::close(fd);
      return 0;
    }
  }
  ::close(fd);
  *size = len;
  std::lock_guard<std::mutex> lock(g_mutex);
  int64_t id = g_next_id++;
  g_handles.emplace(id, Block{static_cast<uint8_t*>(p), len, 0, len, true});
  g_stats.live_blocks += 1;
  g_stats.mapped_bytes += static_cast<int64_t>(len);
  return id;
}

void handle_free(int64_t id) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_handles.find(id);
  if (it == g_handles.end()) throw std::runtime_error("free of unknown or already freed buffer " + std::to_string(id));
  Block b = it->second;
  g_handles.erase(it);
  g_stats.live_blocks -= 1;
  if (b.map_len) {
    ::munmap(b.ptr, b.map_len);
    g_stats.mapped_bytes -= static_cast<int64_t>(b.map_len);
  } else if (b.bucket) {
    pool_free_locked(b.ptr, b.bucket);
  }
}

uint8_t* handle_ptr(int64_t id, size_t* bytes, bool* readonly) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_handles.find(id);
  if (it == g_handles.end()) return nullptr;
  *bytes = it->second.bytes;
  *readonly = it->second.readonly;
  return it->second.ptr;
}

MemStats mem_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_stats;
}

void mem_reset_peak() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_stats.peak_bytes = g_stats.live_bytes;
}

void mem_empty_cache() {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& kv : g_free)
    for (void* q : kv.second) std::free(q);
  g_free.clear();
  g_stats.cached_bytes = 0;
}

}  // namespace sft
