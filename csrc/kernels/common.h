// Shared by every kernel translation unit; each is compiled once per instruction set with
// PYRNN_ISA defined to that set's namespace name (baseline, avx2, avx512).
#pragma once

#include <algorithm>

#include "pyrnn.h"

#ifndef PYRNN_ISA
#error "kernel sources are compiled with -DPYRNN_ISA=<baseline|avx2|avx512>"
#endif

#define PYRNN_STRINGIFY_(x) #x
#define PYRNN_STRINGIFY(x) PYRNN_STRINGIFY_(x)
#define PYRNN_ISA_NAME PYRNN_STRINGIFY(PYRNN_ISA)

// Force inlining where one fused loop nest matters (cell math, its register loops); on a lambda
// the attribute goes after the parameter list.
#define PYRNN_ALWAYS_INLINE inline __attribute__((always_inline))
#define PYRNN_INLINE_LAMBDA __attribute__((always_inline))

namespace pyrnn::PYRNN_ISA {

// Threads worth using for `work` (flops or another measure of it) when each thread needs at
// least `min_per_thread` of it to pay for its start and its share of the waiting, at most
// `limit`. Tests scale every such threshold (thread_testing().work_scale; 0: split any work).
inline int work_threads(double work, double min_per_thread, index limit) {
  const double needed = min_per_thread * thread_testing().work_scale;
  const double fit = needed > 0 ? work / needed : double(limit);
  return static_cast<int>(std::max(1.0, std::min(fit, double(limit))));
}

}  // namespace pyrnn::PYRNN_ISA
