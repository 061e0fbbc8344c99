// Products against weights in their natural (PyTorch) row-major layout, for a few rows of
// input: C(M, N) = A(M, K) W(N, K)^T, one dot product per output. Each weight row is read
// contiguously once per input row, so for the batch-1 streaming step (M = 1) this runs at
// memory speed without packing the weights first.
#pragma once

#include "kernels/common.h"
#include "vec/vec.h"

namespace pyrnn::PYRNN_ISA {

namespace detail {

template <typename T>
inline T horizontal_sum(Vec<T> v) {
  alignas(64) T lanes[Vec<T>::width];
  v.store(lanes);
  T s = T(0);
  for (int i = 0; i < Vec<T>::width; ++i) s += lanes[i];
  return s;
}

// Four weight rows against one input row; the tail of K through partial loads.
template <typename T>
inline void dot4(index K, const T* a, const T* w0, const T* w1, const T* w2, const T* w3, T* out) {
  using V = Vec<T>;
  constexpr int L = V::width;
  V s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
  index k = 0;
  for (; k + L <= K; k += L) {
    const V x = V::loadu(a + k);
    s0 = fma(V::loadu(w0 + k), x, s0);
    s1 = fma(V::loadu(w1 + k), x, s1);
    s2 = fma(V::loadu(w2 + k), x, s2);
    s3 = fma(V::loadu(w3 + k), x, s3);
  }
  if (k < K) {
    const int n = static_cast<int>(K - k);
    const V x = V::load_partial(a + k, n);
    s0 = fma(V::load_partial(w0 + k, n), x, s0);
    s1 = fma(V::load_partial(w1 + k, n), x, s1);
    s2 = fma(V::load_partial(w2 + k, n), x, s2);
    s3 = fma(V::load_partial(w3 + k, n), x, s3);
  }
  out[0] = horizontal_sum(s0);
  out[1] = horizontal_sum(s1);
  out[2] = horizontal_sum(s2);
  out[3] = horizontal_sum(s3);
}

}  // namespace detail

// C[m, n] (+)= sum_k A[m, k] * W[n, k] for m < M, n < N; accumulate adds to C.
template <typename T>
void dot_rows(index M, index N, index K, const T* A, index lda, const T* W, index ldw, T* C,
              index ldc, bool accumulate) {
  T out[4];
  for (index n = 0; n < N; n += 4) {
    const index rows = N - n < 4 ? N - n : 4;
    // Past the last row, repeat it: the extra sums are computed and dropped.
    const T* w[4];
    for (index r = 0; r < 4; ++r) w[r] = W + (n + (r < rows ? r : rows - 1)) * ldw;
    for (index m = 0; m < M; ++m) {
      detail::dot4(K, A + m * lda, w[0], w[1], w[2], w[3], out);
      T* c = C + m * ldc + n;
      for (index r = 0; r < rows; ++r) c[r] = accumulate ? c[r] + out[r] : out[r];
    }
  }
}

}  // namespace pyrnn::PYRNN_ISA
