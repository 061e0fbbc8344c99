// Work shared step by step, for time loops split by units.
//
// A step's unit blocks are cut into items, and each thread of the team owns a contiguous home
// range of them (as a static split would give it). Step by step, a thread takes its own items
// from its home counter, then the items still untaken in other threads' ranges, then moves on
// to the next step; it computes an item of step s once every item of step s - 1 is done.
// Undisturbed, every thread computes its own range (its weights stay in its cache). When one
// is descheduled (another library's threads spinning on its core, a busy machine), the others
// take its items instead of waiting for it at a barrier: a step waits at most for the item a
// thread is in the middle of. Which thread computes an item does not change how it is
// computed, so results stay the same for any thread count.
#pragma once

#include <atomic>
#include <memory>

#include "kernels/interrupt.h"
#include "kernels/spin_wait.h"
#include "pyrnn.h"

namespace pyrnn {

class StepTickets {
 public:
  // `items` per step, over `threads` home ranges.
  StepTickets(index steps, index items, int threads)
      : steps_(steps), items_(items), threads_(threads), cursors_(new Cursor[threads]) {}

  index items() const { return items_; }

  // Runs item(s, j) for the items thread `tid` takes, until every step is done or a stop was
  // decided; the calling thread polls for a stop between items.
  template <typename Item>
  void run(int tid, StopSignal& stop, Item&& item) {
    if (tid == thread_testing().absent_thread) return;
    bool took_over = false;
    for (index s = 0; s < steps_ && !stop.requested();) {
      index j = take(tid, s);
      for (int k = 1; j < 0 && k < threads_; ++k) {
        j = take((tid + k) % threads_, s);
        if (j >= 0 && !took_over) {
          took_over = true;
          note_split(SplitKind::LoopTakeover);
        }
      }
      if (j < 0) {
        ++s;  // every item of step s is taken
        continue;
      }
      const index needed = s * items_;  // every item of the steps before s
      bool stopped = false;
      spin_wait([&] {
        if (done_.load(std::memory_order_acquire) >= needed) return true;
        stop.poll(s);
        return stopped = stop.requested();
      });
      if (stopped) return;
      item(s, j);
      done_.fetch_add(1, std::memory_order_acq_rel);  // publishes the item's writes
      stop.poll(s);
    }
  }

 private:
  struct alignas(64) Cursor {
    std::atomic<index> taken{0};  // items taken from this home range over all steps
  };

  // Takes the next untaken item of step s in `owner`'s home range: its index, or -1. Item v of
  // a range is its item v % n of step v / n; a thread reaches step s only once every item of
  // step s - 1 is taken, so v is at least s * n here.
  index take(int owner, index s) {
    const index begin = items_ * owner / threads_, n = items_ * (owner + 1) / threads_ - begin;
    std::atomic<index>& taken = cursors_[owner].taken;
    index v = taken.load(std::memory_order_relaxed);
    for (;;) {
      if (v >= (s + 1) * n) return -1;  // also when n == 0
      if (taken.compare_exchange_weak(v, v + 1, std::memory_order_relaxed)) return begin + v - s * n;
    }
  }

  const index steps_, items_;
  const int threads_;
  std::unique_ptr<Cursor[]> cursors_;
  alignas(64) std::atomic<index> done_{0};
};

}  // namespace pyrnn
