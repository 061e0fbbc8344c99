// The per-step barrier of the time loops (kernels/spin_wait.h: how its threads wait).
#pragma once

#include <omp.h>

#include <atomic>

#include "kernels/common.h"
#include "kernels/interrupt.h"
#include "kernels/layer_plan.h"
#include "kernels/spin_wait.h"

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
    spin_wait([&] { return generation_.load(std::memory_order_acquire) != generation; });
  }

 private:
  const int threads_;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
};

// Runs body(share) on every thread of one OpenMP team of `threads`. `barrier` points at the
// team's step barrier meanwhile (a no-op when split by rows or run alone); share.team is a
// barrier of the whole team either way. Denormals are flushed on every thread of the team (the
// caller flushes its own: a one-thread loop runs on it). `stop` is the loop's stop decision:
// split by rows, the calling thread keeps asking for it after its own rows (TeamExit).
template <typename Body>
void run_team(int threads, Split split, index rows, index blocks, index out_blocks,
              StepBarrier*& barrier, StopSignal& stop, Body body) {
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
  TeamExit exit;
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
    exit.leave(nthreads, stop);
  }
  barrier = nullptr;
}

}  // namespace pyrnn::PYRNN_ISA
