// Matrix products for the recurrent kernels. Row-major throughout.
#pragma once

#include "kernels/common.h"
#include "kernels/quant.h"
#include "vec/aligned.h"

namespace pyrnn::PYRNN_ISA {

// C(M,N) = beta*C + op(A)(M,K) * op(B)(K,N); op(X) = X^T when the flag is set, so A is
// (M,K) with leading dimension lda, or (K,M) when trans_a. beta == 0 ignores C's contents
// (NaN in C does not leak). Parallel with OpenMP over output blocks when called outside a
// parallel region and the product is large enough; results are bitwise identical for any
// thread count (each element's K-sum has a fixed order).
template <typename T>
void gemm(bool trans_a, bool trans_b, index M, index N, index K, const T* A, index lda,
          const T* B, index ldb, T beta, T* C, index ldc);

// op(B)(K,N) packed once into SIMD panels, for products repeated every time step; or, for a
// quantized layer, into int8 / bfloat16 panels (`quant`, quant.h), data then empty.
template <typename T>
struct PackedB {
  index K = 0, N = 0;
  AlignedVector<T> data;  // panel layout private to gemm.cpp (64-byte aligned)
  QuantPanels quant;
};

template <typename T>
void pack_b(bool trans_b, index K, index N, const T* B, index ldb, PackedB<T>& out);

// pack_b for op(B)(k, j) = rows[j][k]: a transposed B whose rows are gathered from anywhere
// (the gate-blocked recurrent weights), packed in one pass.
template <typename T>
void pack_b_rows(index K, index N, const T* const* rows, PackedB<T>& out);

// Columns [n_begin, n_end) of C(M,N) = beta*C + A(M,K) * Bp(K,N), computed serially by the
// calling thread (callers split columns across threads). n_begin must be a multiple of
// packed_panel_width<T>() (and of kQuantPanel for quantized panels); n_end may be N.
template <typename T>
void gemm_packed(index M, index n_begin, index n_end, const T* A, index lda,
                 const PackedB<T>& Bp, T beta, T* C, index ldc);

template <typename T>
index packed_panel_width();

// A row stride >= n for a matrix of n columns that products read in place as A: rows a
// multiple of 2 KB apart would share L1 sets (a product then copies them into strips first),
// so such an n gets one cache line more.
template <typename T>
index gemm_row_stride(index n);

}  // namespace pyrnn::PYRNN_ISA
