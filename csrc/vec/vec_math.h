// exp, sigmoid and tanh on one Vec<T>, for the array functions of kernels/math.cpp and for
// gate math fused into other kernels. Error bounds: see the top of kernels/math.cpp.
#pragma once

#include <type_traits>

#include "vec/vec.h"

namespace pyrnn::PYRNN_ISA {

// n = round(x / ln2) and r = x - n*ln2 in [-ln2/2, ln2/2] for float32 (ln2 split in two so
// that n*ln2_hi is exact): the range reduction of both float exps below.
struct Ln2Reduced {
  Vec<float> n, r;
};
inline Ln2Reduced reduce_ln2(Vec<float> x) {
  using V = Vec<float>;
  const V round_magic = V::broadcast(12582912.0f);  // 1.5 * 2^23: adding it rounds to integer
  const V n = fma(x, V::broadcast(1.44269504088896341f), round_magic) - round_magic;
  const V r = fnma(n, V::broadcast(0.693359375f), x);
  return {n, fnma(n, V::broadcast(-2.12194440e-4f), r)};
}

// exp(x) = 2^n * e^r with n = round(x / ln2), r = x - n*ln2 in [-ln2/2, ln2/2] (ln2 split in
// two so that n*ln2_hi is exact), e^r a polynomial. 2^n is applied as two factors 2^h * 2^(n-h)
// so that results near the overflow threshold (n = 128 in float) stay finite and results
// below the smallest normal become correctly scaled denormals instead of garbage; x is
// clamped to a range just past both thresholds, so +-inf and overflow/underflow need no
// special case, and NaN passes through the clamp and the arithmetic.
template <typename T>
inline Vec<T> exp_v(Vec<T> x) {
  using V = Vec<T>;
  if constexpr (std::is_same_v<T, float>) {
    const auto [n, r] = reduce_ln2(min(V::broadcast(89.0f), max(V::broadcast(-110.0f), x)));
    // Cephes expf minimax polynomial on [-ln2/2, ln2/2].
    V p = V::broadcast(1.9875691500e-4f);
    p = fma(p, r, V::broadcast(1.3981999507e-3f));
    p = fma(p, r, V::broadcast(8.3334519073e-3f));
    p = fma(p, r, V::broadcast(4.1665795894e-2f));
    p = fma(p, r, V::broadcast(1.6666665459e-1f));
    p = fma(p, r, V::broadcast(5.0000001201e-1f));
    p = fma(p, r * r, r) + V::broadcast(1.0f);
    const V round_magic = V::broadcast(12582912.0f);
    const V h = fma(n, V::broadcast(0.5f), round_magic) - round_magic;
    return (p * pow2n(h)) * pow2n(n - h);
  } else {
    const V round_magic = V::broadcast(6755399441055744.0);  // 1.5 * 2^52
    x = min(V::broadcast(710.0), max(V::broadcast(-750.0), x));
    const V t = fma(x, V::broadcast(1.4426950408889634074), round_magic);
    const V n = t - round_magic;
    V r = fnma(n, V::broadcast(6.93145751953125e-1), x);
    r = fnma(n, V::broadcast(1.42860682030941723212e-6), r);
    // Taylor series to degree 12: truncation error below 2e-16 for |r| <= ln2/2.
    V p = V::broadcast(1.0 / 479001600.0);
    p = fma(p, r, V::broadcast(1.0 / 39916800.0));
    p = fma(p, r, V::broadcast(1.0 / 3628800.0));
    p = fma(p, r, V::broadcast(1.0 / 362880.0));
    p = fma(p, r, V::broadcast(1.0 / 40320.0));
    p = fma(p, r, V::broadcast(1.0 / 5040.0));
    p = fma(p, r, V::broadcast(1.0 / 720.0));
    p = fma(p, r, V::broadcast(1.0 / 120.0));
    p = fma(p, r, V::broadcast(1.0 / 24.0));
    p = fma(p, r, V::broadcast(1.0 / 6.0));
    p = fma(p, r, V::broadcast(0.5));
    p = fma(p, r * r, r) + V::broadcast(1.0);
    const V h = fma(n, V::broadcast(0.5), round_magic) - round_magic;
    return (p * pow2n(h)) * pow2n(n - h);
  }
}

// e^x for float32 where only normal results matter (the sigmoid's e^-x): one 2^n factor and
// a shorter polynomial (fitted here, relative error 1.1e-7 on [-ln2/2, ln2/2]), so results
// below the smallest normal come out as 0 and those within a factor 1.5 of overflow as inf.
// NaN passes through the clamp.
inline Vec<float> exp_normal_v(Vec<float> x) {
  using V = Vec<float>;
  const auto [n, r] = reduce_ln2(min(V::broadcast(89.0f), max(V::broadcast(-88.0f), x)));
  V q = V::broadcast(8.312526102e-3f);
  q = fma(q, r, V::broadcast(4.189011518e-2f));
  q = fma(q, r, V::broadcast(1.666711446e-1f));
  q = fma(q, r, V::broadcast(4.999923177e-1f));
  return (fma(q, r * r, r) + V::broadcast(1.0f)) * pow2n(n);
}

// 1 + e^-x, the denominator of the sigmoid: kept apart so that gate math can fold it into
// another division. e^-x overflows to inf for x < -88.4 (float), giving the sigmoid's limit
// 0, whose true value is below the smallest normal there.
template <typename T>
inline Vec<T> sigmoid_denominator_v(Vec<T> x) {
  using V = Vec<T>;
  if constexpr (std::is_same_v<T, float>) return V::broadcast(1.0f) + exp_normal_v(-x);
  else return V::broadcast(1.0) + exp_v(-x);
}

template <typename T>
inline Vec<T> sigmoid_v(Vec<T> x) {
  return Vec<T>::broadcast(T(1)) / sigmoid_denominator_v(x);
}

// |tanh(x)| = num / den with den in [1, 500] (float), for gate math that folds the division
// into another (tanh(x) = copysign(num / den, x)).
// float32: a P(a^2) / Q(a^2) with a = min(|x|, 9), a rational function fitted here for
// relative error 2e-8 (so tiny x keeps full precision); Q / Q = 1 past 9 (tanh(9) rounds to 1).
// float64: den = 1 and num from tanh(|x|): for |x| < 0.625 the Cephes rational function
// (relative accuracy down to 0), otherwise 1 - 2 / (e^{2|x|} + 1).
template <typename T>
struct Fraction {
  Vec<T> num, den;
};

template <typename T>
inline Fraction<T> tanh_fraction_v(Vec<T> x) {
  using V = Vec<T>;
  const V ax = abs(x);
  const V one = V::broadcast(T(1));
  if constexpr (std::is_same_v<T, float>) {
    const V limit = V::broadcast(9.0f);
    const V a = min(limit, ax);  // NaN passes through
    const V z = a * a;
    V p = V::broadcast(1.3354684969e-8f);
    p = fma(p, z, V::broadcast(2.0609111937e-5f));
    p = fma(p, z, V::broadcast(3.4955905394e-3f));
    p = fma(p, z, V::broadcast(1.3381027892e-1f));
    p = fma(p, z, one);
    V q = V::broadcast(7.7765715557e-7f);
    q = fma(q, z, V::broadcast(3.2856383191e-4f));
    q = fma(q, z, V::broadcast(2.5876992057e-2f));
    q = fma(q, z, V::broadcast(4.6714343494e-1f));
    q = fma(q, z, one);
    return {select(less(limit, ax), q, a * p), q};
  } else {
    const V large = one - V::broadcast(T(2)) / (exp_v(ax + ax) + one);
    const V z = x * x;
    V p = V::broadcast(-9.64399179425052238628e-1);
    p = fma(p, z, V::broadcast(-9.92877231001918586564e1));
    p = fma(p, z, V::broadcast(-1.61468768441708447952e3));
    V q = z + V::broadcast(1.12811678491632931402e2);
    q = fma(q, z, V::broadcast(2.23548839060100448583e3));
    q = fma(q, z, V::broadcast(4.84406305325125486048e3));
    const V small = fma(z * p / q, ax, ax);
    return {select(less(ax, V::broadcast(T(0.625))), small, large), one};
  }
}

// tanh(-0) = -0 through the sign copy.
template <typename T>
inline Vec<T> tanh_v(Vec<T> x) {
  const Fraction<T> t = tanh_fraction_v(x);
  if constexpr (std::is_same_v<T, float>) return copysign(t.num / t.den, x);
  else return copysign(t.num, x);
}

}  // namespace pyrnn::PYRNN_ISA
