// The pool of large buffers (buffer_pool.h): a short list of idle blocks under one mutex.
#include "buffer_pool.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

namespace pyrnn {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPooling = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kPooling = false;
#else
constexpr bool kPooling = true;
#endif
#else
constexpr bool kPooling = true;
#endif

constexpr std::align_val_t kAlignment{64};

struct Block {
  void* p;
  std::size_t bytes;
};

struct Pool {
  Pool() { idle.reserve(kMaxIdleBlocks + 1); }  // so that adding a block never allocates
  std::mutex mutex;
  std::vector<Block> idle;  // oldest first
  std::size_t idle_bytes = 0;
  long reused = 0;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: blocks may come back during interpreter exit
  return *p;
}

void free_block(const Block& b) noexcept { ::operator delete(b.p, kAlignment); }

// A child forked while another thread held the mutex would wait for it forever: the lock is
// taken around fork() and released on both sides.
void lock_for_fork() { pool().mutex.lock(); }
void unlock_after_fork() { pool().mutex.unlock(); }
struct ForkHandler {
  ForkHandler() { pthread_atfork(&lock_for_fork, &unlock_after_fork, &unlock_after_fork); }
} g_fork_handler;

}  // namespace

void* take_buffer(std::size_t bytes) {
  if (kPooling && bytes >= kPooledBytes) {
    Pool& pl = pool();
    std::lock_guard<std::mutex> lock(pl.mutex);
    auto best = pl.idle.end();
    for (auto it = pl.idle.begin(); it != pl.idle.end(); ++it)
      if (it->bytes >= bytes && it->bytes / 2 < bytes && (best == pl.idle.end() || it->bytes < best->bytes))
        best = it;
    if (best != pl.idle.end()) {
      void* p = best->p;
      pl.idle_bytes -= best->bytes;
      pl.idle.erase(best);
      ++pl.reused;
      return p;
    }
  }
  return ::operator new(std::max<std::size_t>(bytes, 1), kAlignment);
}

void give_buffer(void* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  if (!kPooling || bytes < kPooledBytes || bytes > kMaxIdleBytes) return free_block({p, bytes});
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mutex);
  pl.idle.push_back({p, bytes});
  pl.idle_bytes += bytes;
  while (pl.idle.size() > kMaxIdleBlocks || pl.idle_bytes > kMaxIdleBytes) {
    pl.idle_bytes -= pl.idle.front().bytes;
    free_block(pl.idle.front());
    pl.idle.erase(pl.idle.begin());
  }
}

BufferPoolStats buffer_pool_stats() {
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mutex);
  return {kPooling, pl.idle.size(), pl.idle_bytes, pl.reused};
}

void release_idle_buffers() noexcept {
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mutex);
  for (const Block& b : pl.idle) free_block(b);
  pl.idle.clear();
  pl.idle_bytes = 0;
}

}  // namespace pyrnn
