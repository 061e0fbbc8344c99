// Vec<T>: one SIMD register of T (float or double) for the instruction set this translation
// unit is compiled for (PYRNN_ISA). Kernels are written once against this interface:
//
//   Vec<T>::width                  lanes per register (baseline 16 bytes, avx2 32, avx512 64)
//   Vec<T>::Mask                   result of a comparison, consumed by select()
//   zero(), broadcast(x)
//   load(p) / store(p)             p aligned to width * sizeof(T)
//   loadu(p) / storeu(p)           any alignment
//   load_partial(p, n) / store_partial(p, n)
//                                  only lanes [0, n) touched in memory (0 <= n <= width);
//                                  other loaded lanes are zero. For loop tails.
//   a + b, a - b, a * b, a / b, -a
//   fma(a, b, c) = a*b + c         fnma(a, b, c) = c - a*b  (fused where the ISA has FMA)
//   max(a, b), min(a, b)           return b when either is NaN (x86 semantics on every ISA),
//                                  so max(lo, x) and min(hi, x) let a NaN x through
//   sqrt(a), abs(a), copysign(mag, sgn)   (sqrt correctly rounded, as IEEE)
//   less(a, b) -> Mask             select(m, a, b) = m ? a : b, lane-wise
//   pow2n(n)                       2^n for integral n in the normal exponent range
//                                  ([-126, 127] float, [-1022, 1023] double); no UB for NaN
//   hsum(a)                        the sum of the lanes, added in lane order
//
// kVectorRegisters is the register file size the GEMM micro-tile is sized for.
//
// Everything lives in pyrnn::<isa> so that the per-ISA copies never merge at link time.
#pragma once

#include "kernels/common.h"

#if defined(PYRNN_ISA_avx512)
#include "vec/vec_avx512.h"
#elif defined(PYRNN_ISA_avx2)
#include "vec/vec_avx2.h"
#else
#include "vec/vec_generic.h"
#endif

namespace pyrnn::PYRNN_ISA {

template <typename T>
inline T hsum(Vec<T> a) {
  alignas(64) T lanes[Vec<T>::width];
  a.storeu(lanes);
  T s = T(0);
  for (int i = 0; i < Vec<T>::width; ++i) s += lanes[i];
  return s;
}

}  // namespace pyrnn::PYRNN_ISA
