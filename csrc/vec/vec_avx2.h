// AVX2 + FMA Vec<T>: 8 floats or 4 doubles per __m256. Included only through vec/vec.h.
#pragma once

#include <immintrin.h>

namespace pyrnn::PYRNN_ISA {

constexpr int kVectorRegisters = 16;

template <typename T> struct Vec;

template <>
struct Vec<float> {
  using Mask = __m256;
  static constexpr int width = 8;
  __m256 v;

  // Lanes [0, n) set, for the masked loads and stores of loop tails.
  static __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec zero() { return {_mm256_setzero_ps()}; }
  static Vec broadcast(float x) { return {_mm256_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm256_load_ps(p)}; }
  static Vec loadu(const float* p) { return {_mm256_loadu_ps(p)}; }
  static Vec load_partial(const float* p, int n) { return {_mm256_maskload_ps(p, tail_mask(n))}; }
  void store(float* p) const { _mm256_store_ps(p, v); }
  void storeu(float* p) const { _mm256_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm256_maskstore_ps(p, tail_mask(n), v); }
};

template <>
struct Vec<double> {
  using Mask = __m256d;
  static constexpr int width = 4;
  __m256d v;

  static __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static Vec zero() { return {_mm256_setzero_pd()}; }
  static Vec broadcast(double x) { return {_mm256_set1_pd(x)}; }
  static Vec load(const double* p) { return {_mm256_load_pd(p)}; }
  static Vec loadu(const double* p) { return {_mm256_loadu_pd(p)}; }
  static Vec load_partial(const double* p, int n) { return {_mm256_maskload_pd(p, tail_mask(n))}; }
  void store(double* p) const { _mm256_store_pd(p, v); }
  void storeu(double* p) const { _mm256_storeu_pd(p, v); }
  void store_partial(double* p, int n) const { _mm256_maskstore_pd(p, tail_mask(n), v); }
};

using VecF = Vec<float>;
using VecD = Vec<double>;

inline VecF operator+(VecF a, VecF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VecF operator-(VecF a, VecF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VecF operator*(VecF a, VecF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VecF operator/(VecF a, VecF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VecF operator-(VecF a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF fnma(VecF a, VecF b, VecF c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
inline VecF max(VecF a, VecF b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VecF min(VecF a, VecF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline VecF sqrt(VecF a) { return {_mm256_sqrt_ps(a.v)}; }
inline VecF abs(VecF a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline VecF copysign(VecF mag, VecF sgn) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(sign, mag.v), _mm256_and_ps(sign, sgn.v))};
}
inline VecF::Mask less(VecF a, VecF b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
inline VecF select(VecF::Mask m, VecF a, VecF b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }
// See vec_generic.h: the biased exponent lands in the low mantissa bits, then moves up.
inline VecF pow2n(VecF n) {
  const __m256 biased = _mm256_add_ps(n.v, _mm256_set1_ps(8388608.0f + 127.0f));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(biased), 23))};
}

inline VecD operator+(VecD a, VecD b) { return {_mm256_add_pd(a.v, b.v)}; }
inline VecD operator-(VecD a, VecD b) { return {_mm256_sub_pd(a.v, b.v)}; }
inline VecD operator*(VecD a, VecD b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline VecD operator/(VecD a, VecD b) { return {_mm256_div_pd(a.v, b.v)}; }
inline VecD operator-(VecD a) { return {_mm256_xor_pd(a.v, _mm256_set1_pd(-0.0))}; }
inline VecD fma(VecD a, VecD b, VecD c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
inline VecD fnma(VecD a, VecD b, VecD c) { return {_mm256_fnmadd_pd(a.v, b.v, c.v)}; }
inline VecD max(VecD a, VecD b) { return {_mm256_max_pd(a.v, b.v)}; }
inline VecD min(VecD a, VecD b) { return {_mm256_min_pd(a.v, b.v)}; }
inline VecD sqrt(VecD a) { return {_mm256_sqrt_pd(a.v)}; }
inline VecD abs(VecD a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
inline VecD copysign(VecD mag, VecD sgn) {
  const __m256d sign = _mm256_set1_pd(-0.0);
  return {_mm256_or_pd(_mm256_andnot_pd(sign, mag.v), _mm256_and_pd(sign, sgn.v))};
}
inline VecD::Mask less(VecD a, VecD b) { return _mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ); }
inline VecD select(VecD::Mask m, VecD a, VecD b) { return {_mm256_blendv_pd(b.v, a.v, m)}; }
inline VecD pow2n(VecD n) {
  const __m256d biased = _mm256_add_pd(n.v, _mm256_set1_pd(4503599627370496.0 + 1023.0));
  return {_mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(biased), 52))};
}

}  // namespace pyrnn::PYRNN_ISA
