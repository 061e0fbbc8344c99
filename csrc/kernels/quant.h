// Quantized weight panels and their products, for inference with int8 or bfloat16 weights
// (docs/quantization.md). A quantized layer is a float layer whose packed weight panels hold
// QuantPanels: every product of the time loops (gemm_packed) then takes its float activations
// A (M, K), quantizes them itself and multiplies in integers (int8) or in bfloat16 pairs.
//
// int8: weights w (N, K) with one scale per output column, w ~ s_w[n] * q_w[n, k], q_w in
// [-127, 127] (quantized in Python: pyrnn/reference_quant.py). Each row m of A is quantized
// symmetrically at run time, a ~ s_a[m] * q_a[m, k], then
//     C[m, n] = (float(sum_k q_a[m, k] q_w[n, k]) * s_a[m]) * s_w[n]
// with the sum exact in int32 (|sum| < K * 127 * 127 < 2^31 for K < 133000).
// bf16: weights and each product's activations rounded to bfloat16 (to nearest even), pairs of
// products accumulated in float32.
#pragma once

#include <cstdint>

#include "kernels/common.h"
#include "vec/aligned.h"

namespace pyrnn::PYRNN_ISA {

enum class QuantKind : std::uint8_t { None, Int8, Bf16 };

// Columns per panel, and k values per 32-bit lane (int8: 4, as vpdpbusd sums them; bf16: 2,
// as vdpbf16ps does). Panel p holds columns [16p, 16p+16); its k-group g is 64 bytes at
// (p * groups + g) * 64: column j's group at + 4*j. K is zero-padded to whole groups.
constexpr index kQuantPanel = 16;

struct QuantPanels {
  QuantKind kind = QuantKind::None;
  // int8: vpdpbusd (u8 x s8 dot products of 4) on activations shifted by 128, compensated by
  // `offset`; else the sign trick (vpmaddubsw) or scalar code. bf16: vdpbf16ps.
  bool native_dot = false;
  index K = 0, N = 0;
  index groups = 0;                       // k-groups per panel: ceil(K / 4) int8, ceil(K / 2) bf16
  AlignedVector<std::int8_t> q;           // int8 panels
  AlignedVector<std::uint16_t> bf;        // bf16 panels
  AlignedVector<float> scale;             // (panels*16) int8 column scales s_w
  AlignedVector<std::int32_t> offset;     // (panels*16) 128 * sum_k q_w[n, k] (int8, native_dot)
};

// Packs columns j = 0..N-1 of op(B)(k, j) = rows[j][k] (int8: const int8_t*, with scales[j];
// bf16: const uint16_t* bfloat16 bits, scales null).
void pack_quant_rows(QuantKind kind, bool native_dot, index K, index N, const void* const* rows,
                     const float* scales, QuantPanels& out);

// Columns [n_begin, n_end) of C(M, N) = beta*C + A(M, K) * Bp(K, N) as the header says, on the
// calling thread. n_begin is a multiple of kQuantPanel. A row of C depends only on its row of A
// (a row's quantization is its own), so results do not depend on how callers split rows or
// columns. A row of A with NaN or Inf gives a row of NaN.
void quant_gemm_packed(index M, index n_begin, index n_end, const float* A, index lda,
                       const QuantPanels& Bp, float beta, float* C, index ldc);

}  // namespace pyrnn::PYRNN_ISA
