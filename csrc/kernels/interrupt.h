// Stopping a long native call early when its host asks (the Python bindings: Ctrl-C).
//
// The host installs a check on the thread that calls a kernel (InterruptCheckScope). The
// kernels' long loops call StopSignal::poll once per step or block: on that calling thread it
// runs the host's check at most every kPollIntervalNs (a coarse clock read and a thread-local
// test otherwise), on every other thread it returns at once. Once the check says stop, the
// call's remaining loops stop at their next step boundary, the kernel returns early (its
// outputs are then meaningless), and the host raises its error. A stopped call changes nothing
// that a later call reads: scratch buffers are rewritten by every call.
#pragma once

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

#include "kernels/spin_wait.h"
#include "pyrnn.h"

namespace pyrnn {

// The host's check; true: stop the call (the host has recorded why, to raise it afterwards).
using InterruptCheck = bool (*)();

namespace interrupt_detail {

// How often the calling thread asks the host: short enough that a stop is seen well within
// 100 ms, long enough that asking (which takes the GIL) costs nothing measurable.
constexpr std::int64_t kPollIntervalNs = 10'000'000;

// A monotonic clock; the coarse one costs a few nanoseconds and ticks every few milliseconds,
// which is all the interval needs.
inline std::int64_t now_ns() {
#if defined(CLOCK_MONOTONIC_COARSE)
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
#else
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
#endif
}

// The state of the native call running on this thread, if its host installed a check.
struct CallState {
  InterruptCheck check = nullptr;
  bool stopped = false;       // the check said stop: every later poll of the call says so too
  std::int64_t next_check_ns = 0;
};
inline thread_local CallState call;

}  // namespace interrupt_detail

// Whether the call running on this thread has been asked to stop; asks the host when it is
// time to (only the thread that installed the check ever asks).
inline bool interrupt_requested() {
  auto& c = interrupt_detail::call;
  if (c.check == nullptr) return false;
  if (c.stopped) return true;
  const std::int64_t now = interrupt_detail::now_ns();
  if (now < c.next_check_ns) return false;
  c.stopped = c.check();
  c.next_check_ns = interrupt_detail::now_ns() + interrupt_detail::kPollIntervalNs;
  return c.stopped;
}

// Installs `check` for the native calls made on this thread during the scope's lifetime.
class InterruptCheckScope {
 public:
  explicit InterruptCheckScope(InterruptCheck check) {
    interrupt_detail::call = {check, false, interrupt_detail::now_ns() + interrupt_detail::kPollIntervalNs};
  }
  ~InterruptCheckScope() { interrupt_detail::call = {}; }
  InterruptCheckScope(const InterruptCheckScope&) = delete;
  InterruptCheckScope& operator=(const InterruptCheckScope&) = delete;

  bool stopped() const { return interrupt_detail::call.stopped; }
};

// Whether a native call with an installed check is running on this thread (a host's check that
// runs the host's code can use it to refuse a nested call).
inline bool interrupt_check_installed() { return interrupt_detail::call.check != nullptr; }

// One parallel loop's stop decision, shared by its threads. Made on the calling thread before
// the loop (a call already stopped then runs no step).
class StopSignal {
 public:
  StopSignal() : stop_before_(interrupt_detail::call.stopped ? 0 : kNever) {}

  // During step (or block) s, on every thread: the calling thread may decide to stop before
  // step s + 1.
  void poll(index s) {
    if (stop_before_.load(std::memory_order_relaxed) == kNever && interrupt_requested())
      stop_before_.store(s + 1, std::memory_order_relaxed);
  }

  // Whether to stop before step s. Threads that read it right after a barrier that all of them
  // passed at the end of step s - 1 get the same answer: a decision made in step s - 1 or
  // earlier was published by that barrier, and a later one names a later step.
  bool before(index s) const { return stop_before_.load(std::memory_order_relaxed) <= s; }

  // Whether a stop was decided at all (for threads that never wait for one another: each may
  // leave whenever it sees it).
  bool requested() const { return stop_before_.load(std::memory_order_relaxed) != kNever; }

 private:
  static constexpr index kNever = std::numeric_limits<index>::max();
  std::atomic<index> stop_before_;
};

// The end of a team whose threads never wait for one another (split by rows or by items):
// every thread calls leave() once its share is done. Only the calling thread asks the host for
// a stop, so when its share ends first it waits here for the others, still asking: a Ctrl-C
// then reaches threads that are still working instead of waiting for them to finish.
class TeamExit {
 public:
  void leave(int team_size, StopSignal& stop) {
    arrived_.fetch_add(1, std::memory_order_acq_rel);
    if (!interrupt_check_installed()) return;
    spin_wait([&] {
      stop.poll(0);
      return arrived_.load(std::memory_order_acquire) >= team_size;
    });
  }

 private:
  std::atomic<int> arrived_{0};
};

}  // namespace pyrnn
