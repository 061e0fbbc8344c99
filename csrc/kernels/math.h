// Vectorised transcendental functions used by the cells; maximum errors documented in
// csrc/kernels/math.cpp and enforced by tests/test_math_accuracy.py. y may alias x.
#pragma once

#include "kernels/common.h"

namespace pyrnn::PYRNN_ISA {

template <typename T> void vexp(index n, const T* x, T* y);
template <typename T> void vsigmoid(index n, const T* x, T* y);
template <typename T> void vtanh(index n, const T* x, T* y);

}  // namespace pyrnn::PYRNN_ISA
