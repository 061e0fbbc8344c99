// Splitting element-wise work across pyrnn's threads.
//
// for_chunks(n, grain, body) calls body(begin, end) on contiguous chunks that cover [0, n)
// once, one chunk per thread, each at least `grain` items: serially (one call, body(0, n))
// when the work is too small to pay for waking threads, when one thread is configured, or
// when called inside a parallel region. Kernels written on it must compute each item the same
// way whatever chunk it falls in (element-wise passes, or whole rows / columns as the item),
// which makes their results bitwise identical for any thread count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <utility>

#include "pyrnn.h"

namespace pyrnn {

// Threads for n items when each thread needs at least `grain` of them to pay for waking it:
// 1 inside a parallel region. The grain scales with the testing hook's work_scale (0 in tests
// that reach the split at small sizes), as every other threshold does.
inline int chunk_threads(index n, index grain) {
  if (omp_in_parallel()) return 1;
  const double needed = double(std::max<index>(grain, 1)) * thread_testing().work_scale;
  const double fit = needed > 0 ? double(n) / needed : double(num_threads());
  return static_cast<int>(std::clamp<double>(fit, 1.0, double(num_threads())));
}

// [begin, end) of chunk `i` of `parts` over n items, chunk edges rounded to multiples of
// `align` items (the last chunk ends at n).
inline std::pair<index, index> chunk_range(index n, int i, int parts, index align) {
  auto edge = [&](int k) { return k == parts ? n : std::min(n, n * k / parts / align * align); };
  return {edge(i), edge(i + 1)};
}

template <typename Body>
void for_chunks(index n, index grain, Body&& body, index align = 16) {
  if (n <= 0) return;
  const int threads = chunk_threads(n, grain);
  if (threads == 1) {
    body(index(0), n);
    return;
  }
  note_split(SplitKind::Elementwise);
#pragma omp parallel num_threads(threads)
  {
    const auto [begin, end] = chunk_range(n, omp_get_thread_num(), omp_get_num_threads(), align);
    if (end > begin) body(begin, end);
  }
}

}  // namespace pyrnn
