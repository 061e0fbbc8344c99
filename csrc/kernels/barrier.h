// The per-step barrier of the time loops. It spins briefly (a step's work is microseconds, so
// a sleeping wait would cost more than the step) and then yields the core: when the machine
// is oversubscribed a spinning waiter would otherwise burn the time slice the thread it waits
// for needs (OpenMP's own barrier spins so, and is many times slower under load).
#pragma once

#include <omp.h>

#include <atomic>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "kernels/common.h"
#include "kernels/layer_plan.h"

namespace pyrnn::PYRNN_ISA {

class StepBarrier {
 public:
  explicit StepBarrier(int threads) : threads_(threads) {}

  void wait() {
    if (threads_ == 1) return;
    const unsigned generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);  // publishes every thread's writes
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < kSpinsBeforeYield) pause();
      else std::this_thread::yield();
    }
  }

 private:
  static constexpr int kSpinsBeforeYield = 2000;  // a few microseconds

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }

  const int threads_;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
};

// Runs body(share) on every thread of one OpenMP team of `threads`. `barrier` points at the
// team's step barrier meanwhile (a no-op when split by rows or run alone); share.team is a
// barrier of the whole team either way. Denormals are flushed on every thread of the team (the
// caller flushes its own: a one-thread loop runs on it).
template <typename Body>
void run_team(int threads, Split split, index rows, index blocks, index out_blocks,
              StepBarrier*& barrier, Body body) {
  StepBarrier alone(1);
  const Share whole{{0, rows}, {0, blocks}, {0, out_blocks}, {0, blocks}, &alone};
  if (threads <= 1) {
    // No team: entering an OpenMP region costs a microsecond or more (libgomp may wake or
    // release pool threads), as long as a whole streaming step of a small layer.
    barrier = &alone;
    body(whole);
    barrier = nullptr;
    return;
  }
  // Sized before the team starts, so that no extra barrier is needed to publish it. A team
  // smaller than asked for (inside another parallel region, a thread limit) runs the whole
  // loop on its first thread.
  StepBarrier team(threads), step_barrier(split == Split::Rows ? 1 : threads);
  barrier = &step_barrier;
  note_split(split == Split::Rows ? SplitKind::LoopRows : SplitKind::LoopUnits);
#pragma omp parallel num_threads(threads)
  {
    FlushDenormals ftz;
    const int tid = omp_get_thread_num(), nthreads = omp_get_num_threads();
    const Range units = thread_share(blocks, tid, nthreads);
    if (nthreads != threads) {
      if (tid == 0) {
        barrier = &alone;
        body(whole);
      }
    } else if (split == Split::Rows) {
      body(Share{thread_share(rows, tid, nthreads), {0, blocks}, {0, out_blocks}, units, &team});
    } else {
      body(Share{{0, rows}, units, thread_share(out_blocks, tid, nthreads), units, &team});
    }
  }
  barrier = nullptr;
}

}  // namespace pyrnn::PYRNN_ISA
