// Waiting for other threads of a team: spin briefly (their work is often microseconds away,
// and a sleeping wait would cost more than that), then yield the core. When the machine is
// oversubscribed a spinning waiter would otherwise burn the time slice of the thread it waits
// for.
#pragma once

#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pyrnn {

// Returns once done() is true; done() is called on every round.
template <typename Done>
void spin_wait(Done&& done) {
  constexpr int kSpinsBeforeYield = 2000;  // a few microseconds
  for (int spins = 0; !done(); ++spins) {
    if (spins < kSpinsBeforeYield) {
#if defined(__x86_64__) || defined(__i386__)
      _mm_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace pyrnn
