// Products against weights in their natural (PyTorch) row-major layout, for a few rows of
// input: C(M, N) = A(M, K) W(N, K)^T, one dot product per output. Each weight row is read
// contiguously once per input row, so the batch-1 streaming step runs at memory speed
// without packing the weights first (packing would cost more than the step itself).
#pragma once

#include <algorithm>
#include <type_traits>

#include "kernels/common.h"
#include "vec/vec.h"

namespace pyrnn::PYRNN_ISA {

namespace detail {

// R = Vec<T>::width weight rows are dotted with one input row at a time; their R partial-sum
// registers reduce to one register holding the R dot products.
template <typename T>
inline Vec<T> reduce_lanes(const Vec<T>* acc) {
  constexpr int R = Vec<T>::width;
#if defined(PYRNN_ISA_avx2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256 t0 = _mm256_hadd_ps(acc[0].v, acc[1].v), t1 = _mm256_hadd_ps(acc[2].v, acc[3].v);
    const __m256 t2 = _mm256_hadd_ps(acc[4].v, acc[5].v), t3 = _mm256_hadd_ps(acc[6].v, acc[7].v);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    // u0 = [row 0..3 low-half sums | row 0..3 high-half sums], u1 likewise for rows 4..7.
    return {_mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31))};
  } else {
    const __m256d t0 = _mm256_hadd_pd(acc[0].v, acc[1].v), t1 = _mm256_hadd_pd(acc[2].v, acc[3].v);
    return {_mm256_add_pd(_mm256_permute2f128_pd(t0, t1, 0x20), _mm256_permute2f128_pd(t0, t1, 0x31))};
  }
#else
  alignas(64) T lanes[R][R];
  alignas(64) T sums[R];
  for (int r = 0; r < R; ++r) acc[r].store(lanes[r]);
  for (int r = 0; r < R; ++r) {
    T s = T(0);
    for (int i = 0; i < R; ++i) s += lanes[r][i];
    sums[r] = s;
  }
  return Vec<T>::load(sums);
#endif
}

// Dot products of `rows` (<= R) weight rows w[0..rows) with a; lanes past `rows` are garbage.
template <typename T>
inline Vec<T> dot_block(index K, const T* a, const T* const* w) {
  using V = Vec<T>;
  constexpr int R = V::width;
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = V::zero();
  index k = 0;
  for (; k + R <= K; k += R) {
    const V x = V::loadu(a + k);
    for (int r = 0; r < R; ++r) acc[r] = fma(V::loadu(w[r] + k), x, acc[r]);
  }
  if (k < K) {
    const int n = static_cast<int>(K - k);
    const V x = V::load_partial(a + k, n);
    for (int r = 0; r < R; ++r) acc[r] = fma(V::load_partial(w[r] + k, n), x, acc[r]);
  }
  return reduce_lanes(acc);
}

}  // namespace detail

// C[m, n] (+)= sum_k A[m, k] * W[n, k] for m < M, n < N; accumulate adds to C.
template <typename T>
void dot_rows(index M, index N, index K, const T* A, index lda, const T* W, index ldw, T* C,
              index ldc, bool accumulate) {
  using V = Vec<T>;
  constexpr int R = V::width;
  const T* w[R];
  for (index n = 0; n < N; n += R) {
    const int rows = static_cast<int>(std::min<index>(R, N - n));
    // Past the last row, repeat it: those sums are computed and never stored.
    for (int r = 0; r < R; ++r) w[r] = W + (n + std::min(r, rows - 1)) * ldw;
    for (index m = 0; m < M; ++m) {
      V sums = detail::dot_block(K, A + m * lda, w);
      T* c = C + m * ldc + n;
      if (rows == R) {
        if (accumulate) sums = sums + V::loadu(c);
        sums.storeu(c);
      } else {
        if (accumulate) sums = sums + V::load_partial(c, rows);
        sums.store_partial(c, rows);
      }
    }
  }
}

}  // namespace pyrnn::PYRNN_ISA
