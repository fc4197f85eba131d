// Native memory: a 64-byte-aligned, size-bucketed caching allocator, and a handle table that lets
// JavaScript refer to blocks (pooled or mmapped) by id so every kernel argument is bounds-checked.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sft {

struct MemStats {
  int64_t live_bytes;     // bytes in blocks handed out and not yet freed (bucket sizes)
  int64_t peak_bytes;     // high-water mark of live_bytes since the last reset
  int64_t cached_bytes;   // bytes held in free lists for reuse
  int64_t os_allocs;      // blocks obtained from the OS so far (steady-state steps add none)
  int64_t live_blocks;    // handles alive (pooled + mapped)
  int64_t mapped_bytes;   // bytes of live read-only file mappings
};

// Raw pool, for kernels' scratch space too.
void* pool_alloc(size_t bytes, size_t* bucket_bytes);
void pool_free(void* p, size_t bucket_bytes);

// Handles: ids > 0; id 0 is never valid.
int64_t handle_alloc(size_t bytes, bool zero);                       // zero-filled when asked
int64_t handle_mmap(const std::string& path, size_t* size, std::string* error);
void handle_free(int64_t id);                                        // throws on unknown id
// Looks up a handle; returns nullptr when unknown. `bytes` gets its size, `readonly` whether it is a mapping.
uint8_t* handle_ptr(int64_t id, size_t* bytes, bool* readonly);

MemStats mem_stats();
void mem_reset_peak();
void mem_empty_cache();

}  // namespace sft
