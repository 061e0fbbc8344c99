// Large buffers (training workspaces, gate gradients) kept for reuse between native calls.
//
// A training step asks for the same few tens of MB every time. Memory fresh from the system
// costs a page fault and a cleared page per 4 KB (per 2 MB with transparent huge pages) on its
// first touch, about a tenth of an LSTM training step. glibc keeps a freed block below 32 MB
// in its heap for the next request once it has seen one such block come back (its mmap
// threshold adapts up to 32 MB), but maps every larger one afresh and unmaps it on release.
// Blocks of at least kPooledBytes therefore return here when released and go to the next
// request that fits them (its size at most the block's and more than half of it); smaller
// ones stay with malloc, whose adaptive thresholds depend on seeing them freed. At most
// kMaxIdleBlocks blocks and kMaxIdleBytes bytes stay idle; the oldest idle block is freed
// first. Builds with AddressSanitizer pool nothing, so that a use after release is still
// reported.
#pragma once

#include <cstddef>

namespace pyrnn {

constexpr std::size_t kPooledBytes = std::size_t(32) << 20;
constexpr std::size_t kMaxIdleBlocks = 8;
constexpr std::size_t kMaxIdleBytes = std::size_t(1) << 30;

// `bytes` of uninitialized memory, 64-byte aligned; throws std::bad_alloc.
void* take_buffer(std::size_t bytes);

// Returns a block from take_buffer(bytes) (null is ignored).
void give_buffer(void* p, std::size_t bytes) noexcept;

struct BufferPoolStats {
  bool enabled;  // false under AddressSanitizer
  std::size_t idle_blocks, idle_bytes;
  long reused;  // requests served from an idle block since the process started
};
BufferPoolStats buffer_pool_stats();

// Frees every idle block.
void release_idle_buffers() noexcept;

}  // namespace pyrnn
