// Gate math of the exponential-gating cells, shared by slstm.cpp and mlstm.cpp.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

#include "vec/vec_math.h"

namespace pyrnn::PYRNN_ISA {

// log(1 + e) for e in [0, 1] as 2 atanh(s), s = e / (2 + e) in [0, 1/3]: an odd series in s
// with s^2 <= 1/9, so the terms to degree 15 (float) or 33 (double) reach full precision,
// and small e keeps full relative precision (no cancellation).
template <typename T>
inline Vec<T> log1p_unit_v(Vec<T> e) {
  using V = Vec<T>;
  const V s = e / (V::broadcast(T(2)) + e);
  const V s2 = s * s;
  constexpr int kTerms = std::is_same_v<T, float> ? 8 : 17;
  V p = V::broadcast(T(1) / T(2 * kTerms - 1));
  for (int k = kTerms - 2; k >= 0; --k) p = fma(p, s2, V::broadcast(T(1) / T(2 * k + 1)));
  return V::broadcast(T(2)) * s * p;
}

// log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|)), exact at both tails.
template <typename T>
inline Vec<T> logsigmoid_v(Vec<T> x) {
  using V = Vec<T>;
  return min(x, V::zero()) - log1p_unit_v(exp_v(-abs(x)));
}

template <typename T>
inline T logsigmoid_s(T x) {
  return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x)));
}

template <typename T>
inline T sigmoid_s(T x) {
  const T e = std::exp(-std::abs(x));
  return x >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// exp(-m) in the mLSTM denominator is exp(min(-m, kExpNegMCap)) (see reference_xlstm.py).
constexpr double kExpNegMCap = 60.0;

template <typename T>
constexpr T neg_inf() { return -std::numeric_limits<T>::infinity(); }

}  // namespace pyrnn::PYRNN_ISA
