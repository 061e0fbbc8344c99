// How many threads native calls use, what a process forked after they ran may use, how often
// each way of splitting work ran, and what tests may force about the splits.
//
// OpenMP (libgomp) keeps a pool of threads after the first parallel region. fork() copies only
// the calling thread, so a child's next region waits forever for pool threads that do not
// exist. A child of a process whose pool exists therefore runs every native call on its own
// thread (a region of one thread never touches the pool); a child of a process that never ran
// a team keeps its thread count and starts its own pool.
#include <omp.h>
#include <pthread.h>

#include <array>
#include <atomic>
#include <stdexcept>
#include <string>

#include "pyrnn.h"

namespace pyrnn {
namespace {

int g_threads = 0;  // 0: not chosen yet
std::atomic<bool> g_pool_exists{false};
bool g_fork_limited = false;
ThreadTesting g_testing;
std::array<std::atomic<long>, static_cast<size_t>(SplitKind::Count)> g_split_counts{};

void limit_forked_child() {
  if (g_pool_exists.load(std::memory_order_relaxed)) g_fork_limited = true;
}

struct ForkHandler {
  ForkHandler() { pthread_atfork(nullptr, nullptr, &limit_forked_child); }
} g_fork_handler;

}  // namespace

int num_threads() {
  if (g_fork_limited) return 1;
  if (g_threads <= 0) g_threads = omp_get_max_threads();
  return g_threads;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("number of threads must be >= 1, got " + std::to_string(n));
  g_threads = n;
}

bool fork_limited() { return g_fork_limited; }

void note_split(SplitKind kind) {
  g_pool_exists.store(true, std::memory_order_relaxed);
  g_split_counts[static_cast<size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
}

long split_count(SplitKind kind) {
  return g_split_counts[static_cast<size_t>(kind)].load(std::memory_order_relaxed);
}

void reset_split_counts() {
  for (auto& c : g_split_counts) c.store(0, std::memory_order_relaxed);
}

const ThreadTesting& thread_testing() { return g_testing; }

void set_thread_testing(const ThreadTesting& t) {
  if (!(t.work_scale >= 0.0))
    throw std::invalid_argument("work_scale must be >= 0, got " + std::to_string(t.work_scale));
  g_testing = t;
}

}  // namespace pyrnn
