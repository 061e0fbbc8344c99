// AVX-512 (F + DQ) Vec<T>: 16 floats or 8 doubles per register; comparisons give k-masks.
// Included only through vec/vec.h.
#pragma once

#include <immintrin.h>

namespace pyrnn::PYRNN_ISA {

constexpr int kVectorRegisters = 32;

template <typename T> struct Vec;

template <>
struct Vec<float> {
  using Mask = __mmask16;
  static constexpr int width = 16;
  __m512 v;

  // Lanes [0, n) set, for the masked loads and stores of loop tails.
  static __mmask16 tail_mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec broadcast(float x) { return {_mm512_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm512_load_ps(p)}; }
  static Vec loadu(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec load_partial(const float* p, int n) { return {_mm512_maskz_loadu_ps(tail_mask(n), p)}; }
  void store(float* p) const { _mm512_store_ps(p, v); }
  void storeu(float* p) const { _mm512_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
};

template <>
struct Vec<double> {
  using Mask = __mmask8;
  static constexpr int width = 8;
  __m512d v;

  static __mmask8 tail_mask(int n) { return static_cast<__mmask8>((1u << n) - 1u); }
  static Vec zero() { return {_mm512_setzero_pd()}; }
  static Vec broadcast(double x) { return {_mm512_set1_pd(x)}; }
  static Vec load(const double* p) { return {_mm512_load_pd(p)}; }
  static Vec loadu(const double* p) { return {_mm512_loadu_pd(p)}; }
  static Vec load_partial(const double* p, int n) { return {_mm512_maskz_loadu_pd(tail_mask(n), p)}; }
  void store(double* p) const { _mm512_store_pd(p, v); }
  void storeu(double* p) const { _mm512_storeu_pd(p, v); }
  void store_partial(double* p, int n) const { _mm512_mask_storeu_pd(p, tail_mask(n), v); }
};

using VecF = Vec<float>;
using VecD = Vec<double>;

inline VecF operator+(VecF a, VecF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecF operator-(VecF a, VecF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecF operator*(VecF a, VecF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecF operator/(VecF a, VecF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VecF operator-(VecF a) { return {_mm512_xor_ps(a.v, _mm512_set1_ps(-0.0f))}; }
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF fnma(VecF a, VecF b, VecF c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
inline VecF max(VecF a, VecF b) { return {_mm512_max_ps(a.v, b.v)}; }
inline VecF min(VecF a, VecF b) { return {_mm512_min_ps(a.v, b.v)}; }
inline VecF sqrt(VecF a) { return {_mm512_sqrt_ps(a.v)}; }
inline VecF abs(VecF a) { return {_mm512_andnot_ps(_mm512_set1_ps(-0.0f), a.v)}; }
inline VecF copysign(VecF mag, VecF sgn) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  return {_mm512_or_ps(_mm512_andnot_ps(sign, mag.v), _mm512_and_ps(sign, sgn.v))};
}
inline VecF::Mask less(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
inline VecF select(VecF::Mask m, VecF a, VecF b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }
// See vec_generic.h: the biased exponent lands in the low mantissa bits, then moves up.
inline VecF pow2n(VecF n) {
  const __m512 biased = _mm512_add_ps(n.v, _mm512_set1_ps(8388608.0f + 127.0f));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(biased), 23))};
}

inline VecD operator+(VecD a, VecD b) { return {_mm512_add_pd(a.v, b.v)}; }
inline VecD operator-(VecD a, VecD b) { return {_mm512_sub_pd(a.v, b.v)}; }
inline VecD operator*(VecD a, VecD b) { return {_mm512_mul_pd(a.v, b.v)}; }
inline VecD operator/(VecD a, VecD b) { return {_mm512_div_pd(a.v, b.v)}; }
inline VecD operator-(VecD a) { return {_mm512_xor_pd(a.v, _mm512_set1_pd(-0.0))}; }
inline VecD fma(VecD a, VecD b, VecD c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
inline VecD fnma(VecD a, VecD b, VecD c) { return {_mm512_fnmadd_pd(a.v, b.v, c.v)}; }
inline VecD max(VecD a, VecD b) { return {_mm512_max_pd(a.v, b.v)}; }
inline VecD min(VecD a, VecD b) { return {_mm512_min_pd(a.v, b.v)}; }
inline VecD sqrt(VecD a) { return {_mm512_sqrt_pd(a.v)}; }
inline VecD abs(VecD a) { return {_mm512_andnot_pd(_mm512_set1_pd(-0.0), a.v)}; }
inline VecD copysign(VecD mag, VecD sgn) {
  const __m512d sign = _mm512_set1_pd(-0.0);
  return {_mm512_or_pd(_mm512_andnot_pd(sign, mag.v), _mm512_and_pd(sign, sgn.v))};
}
inline VecD::Mask less(VecD a, VecD b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ); }
inline VecD select(VecD::Mask m, VecD a, VecD b) { return {_mm512_mask_blend_pd(m, b.v, a.v)}; }
inline VecD pow2n(VecD n) {
  const __m512d biased = _mm512_add_pd(n.v, _mm512_set1_pd(4503599627370496.0 + 1023.0));
  return {_mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(biased), 52))};
}

}  // namespace pyrnn::PYRNN_ISA
