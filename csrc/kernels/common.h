// Shared by every kernel translation unit; each is compiled once per instruction set with
// PYRNN_ISA defined to that set's namespace name (baseline, avx2, avx512).
#pragma once

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
