// Baseline Vec<T>: 16-byte GCC/Clang vector extensions, portable to any target (SSE2 on
// x86-64, NEON on ARM) without intrinsics. Included only through vec/vec.h.
#pragma once

#include <cstdint>
#include <cmath>
#include <cstring>

namespace pyrnn::PYRNN_ISA {

// SSE2 has 16 registers; NEON has 32, but sizing for 16 is safe for both.
constexpr int kVectorRegisters = 16;

template <typename T> struct Vec;

namespace detail {

// The vector types and bit layout of one scalar type.
template <typename T> struct GenericTraits;
template <> struct GenericTraits<float> {
  typedef float Native __attribute__((vector_size(16)));
  typedef std::int32_t Mask __attribute__((vector_size(16)));   // what a comparison gives
  typedef std::uint32_t Bits __attribute__((vector_size(16)));  // for bit manipulation
  static constexpr int mantissa_bits = 23, exponent_bias = 127;
};
template <> struct GenericTraits<double> {
  typedef double Native __attribute__((vector_size(16)));
  typedef std::int64_t Mask __attribute__((vector_size(16)));
  typedef std::uint64_t Bits __attribute__((vector_size(16)));
  static constexpr int mantissa_bits = 52, exponent_bias = 1023;
};

}  // namespace detail

template <typename T>
struct Vec {
  using Native = typename detail::GenericTraits<T>::Native;
  using Mask = typename detail::GenericTraits<T>::Mask;  // all-ones lanes where true
  using Bits = typename detail::GenericTraits<T>::Bits;
  static constexpr int width = 16 / sizeof(T);
  Native v;

  static Vec zero() { return {Native{}}; }
  static Vec broadcast(T x) { return {Native{} + x}; }
  static Vec loadu(const T* p) { Vec r; std::memcpy(&r.v, p, sizeof(Native)); return r; }
  static Vec load(const T* p) { return loadu(p); }
  static Vec load_partial(const T* p, int n) {
    Vec r = zero();
    std::memcpy(&r.v, p, sizeof(T) * n);
    return r;
  }
  void storeu(T* p) const { std::memcpy(p, &v, sizeof(Native)); }
  void store(T* p) const { storeu(p); }
  void store_partial(T* p, int n) const { std::memcpy(p, &v, sizeof(T) * n); }
};

template <typename T> inline Vec<T> operator+(Vec<T> a, Vec<T> b) { return {a.v + b.v}; }
template <typename T> inline Vec<T> operator-(Vec<T> a, Vec<T> b) { return {a.v - b.v}; }
template <typename T> inline Vec<T> operator*(Vec<T> a, Vec<T> b) { return {a.v * b.v}; }
template <typename T> inline Vec<T> operator/(Vec<T> a, Vec<T> b) { return {a.v / b.v}; }
template <typename T> inline Vec<T> operator-(Vec<T> a) { return {-a.v}; }
// Written unfused; targets with FMA (ARM) contract it under GCC's default -ffp-contract=fast.
template <typename T> inline Vec<T> fma(Vec<T> a, Vec<T> b, Vec<T> c) { return {a.v * b.v + c.v}; }
template <typename T> inline Vec<T> fnma(Vec<T> a, Vec<T> b, Vec<T> c) { return {c.v - a.v * b.v}; }
template <typename T> inline Vec<T> max(Vec<T> a, Vec<T> b) { return {a.v > b.v ? a.v : b.v}; }
template <typename T> inline Vec<T> min(Vec<T> a, Vec<T> b) { return {a.v < b.v ? a.v : b.v}; }
template <typename T> inline typename Vec<T>::Mask less(Vec<T> a, Vec<T> b) { return a.v < b.v; }
template <typename T> inline Vec<T> select(typename Vec<T>::Mask m, Vec<T> a, Vec<T> b) {
  return {m ? a.v : b.v};
}

template <typename T> inline Vec<T> sqrt(Vec<T> a) {
  Vec<T> r;
  for (int i = 0; i < Vec<T>::width; ++i) r.v[i] = std::sqrt(a.v[i]);
  return r;
}
template <typename T> inline Vec<T> abs(Vec<T> a) {
  using Bits = typename Vec<T>::Bits;
  const Bits sign = (Bits{} + 1) << (sizeof(T) * 8 - 1);
  return {(typename Vec<T>::Native)((Bits)a.v & ~sign)};
}

template <typename T> inline Vec<T> copysign(Vec<T> mag, Vec<T> sgn) {
  using Bits = typename Vec<T>::Bits;
  const Bits sign = (Bits{} + 1) << (sizeof(T) * 8 - 1);
  return {(typename Vec<T>::Native)(((Bits)mag.v & ~sign) | ((Bits)sgn.v & sign))};
}

// n + 2^mantissa_bits + bias puts the biased exponent in the low mantissa bits (exactly, as
// n is integral and small); shifting them up makes the exponent field of 2^n.
template <typename T> inline Vec<T> pow2n(Vec<T> n) {
  using Tr = detail::GenericTraits<T>;
  using Bits = typename Vec<T>::Bits;
  const T magic = T(std::int64_t(1) << Tr::mantissa_bits) + T(Tr::exponent_bias);
  const Bits biased = (Bits)(n.v + magic);
  return {(typename Vec<T>::Native)(biased << Tr::mantissa_bits)};
}

}  // namespace pyrnn::PYRNN_ISA
