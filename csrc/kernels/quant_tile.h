// The blocked loops of the quantized products (quant_gemm.cpp), written once over an `Ops`
// type that provides one instruction set's dot products of 32-bit groups:
//
//   Ops::kInt8         int8 groups of 4 (accumulators int32) or bf16 pairs (float)
//   Ops::kVecs         registers per 16-column panel (16 / lanes)
//   Ops::kRows         rows of a tile; Ops::kPanels panels of a tile (kPanelsOneRow at one row)
//   Ops::Acc           an accumulator register;  Ops::zero()
//   Ops::Group         a row's group of activations prepared for dot: Ops::group(p) from its 4 bytes
//   Ops::weights(b)    a register of weight groups (one per lane) from b
//   Ops::dot(acc, g, w)  acc + the lane-wise dot products of group g and the weight groups w
//   Ops::store(acc, out) the lanes to out (int32 or float)
//
// Included by quant_gemm.cpp and quant_dot.cpp (the separately compiled VNNI / BF16 kernels).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/quant.h"
#include "vec/aligned.h"

namespace pyrnn::PYRNN_ISA {

// One R x (np*16) tile of C from R rows of activations (row r's groups at a + r*lda bytes) and
// np panels at b (panel stride panel_bytes). n_valid columns are written.
template <class Ops, int R, int NP>
void quant_tile(index groups, const std::uint8_t* a, index lda, const std::uint8_t* b,
                index panel_bytes, const float* sa, const float* sw, const std::int32_t* offset,
                float beta, float* c, index ldc, index n_valid) {
  constexpr int NV = NP * Ops::kVecs;
  constexpr int lanes = 16 / Ops::kVecs;
  // The loops over registers are unrolled in full, so that the accumulators stay in registers;
  // a panel's register is loaded once for all rows.
  typename Ops::Acc acc[R * NV];
#pragma GCC unroll 16
  for (int i = 0; i < R * NV; ++i) acc[i] = Ops::zero();
  for (index g = 0; g < groups; ++g) {
    typename Ops::Group ag[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) ag[r] = Ops::group(a + r * lda + 4 * g);
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const auto w = Ops::weights(b + (v / Ops::kVecs) * panel_bytes + 64 * g + (v % Ops::kVecs) * lanes * 4);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r * NV + v] = Ops::dot(acc[r * NV + v], ag[r], w);
    }
  }
  using Lane = std::conditional_t<Ops::kInt8, std::int32_t, float>;
  alignas(64) Lane out[R][NV * lanes];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) Ops::store(acc[r * NV + v], out[r] + v * lanes);
  const index n = std::min<index>(n_valid, NV * lanes);
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    for (index j = 0; j < n; ++j) {
      float value;
      if constexpr (Ops::kInt8) value = float(out[r][j] - offset[j]) * sa[r] * sw[j];
      else value = out[r][j];
      cr[j] = beta == 0.0f ? value : beta * cr[j] + value;
    }
  }
}

// Tiles of R rows over np (< NP) panels: the last panels of a column range.
template <class Ops, int R, int NP>
void quant_tile_panels(int np, index groups, const std::uint8_t* a, index lda, const std::uint8_t* b,
                       index panel_bytes, const float* sa, const float* sw, const std::int32_t* offset,
                       float beta, float* c, index ldc, index n_valid) {
  if constexpr (NP >= 1) {
    if (np == NP)
      return quant_tile<Ops, R, NP>(groups, a, lda, b, panel_bytes, sa, sw, offset, beta, c, ldc, n_valid);
    quant_tile_panels<Ops, R, NP - 1>(np, groups, a, lda, b, panel_bytes, sa, sw, offset, beta, c, ldc, n_valid);
  }
}

// Rows [0, m) (m <= Ops::kRows) against panels [0, panels) of n columns.
template <class Ops, int R>
void quant_strip(index panels, index n, index groups, const std::uint8_t* a, index lda,
                 const std::uint8_t* b, index panel_bytes, const float* sa, const float* sw,
                 const std::int32_t* offset, float beta, float* c, index ldc) {
  constexpr int NP = R == 1 ? Ops::kPanelsOneRow : Ops::kPanels;
  index p = 0;
  for (; p + NP <= panels; p += NP)
    quant_tile<Ops, R, NP>(groups, a, lda, b + p * panel_bytes, panel_bytes, sa, sw + p * 16,
                           offset + p * 16, beta, c + p * 16, ldc, n - p * 16);
  if (p < panels)
    quant_tile_panels<Ops, R, NP - 1>(static_cast<int>(panels - p), groups, a, lda, b + p * panel_bytes,
                                      panel_bytes, sa, sw + p * 16, offset + p * 16, beta, c + p * 16,
                                      ldc, n - p * 16);
}

template <class Ops, int R>
void quant_rows(int m, index panels, index n, index groups, const std::uint8_t* a, index lda,
                const std::uint8_t* b, index panel_bytes, const float* sa, const float* sw,
                const std::int32_t* offset, float beta, float* c, index ldc) {
  if constexpr (R >= 1) {
    if (m == R)
      return quant_strip<Ops, R>(panels, n, groups, a, lda, b, panel_bytes, sa, sw, offset, beta, c, ldc);
    quant_rows<Ops, R - 1>(m, panels, n, groups, a, lda, b, panel_bytes, sa, sw, offset, beta, c, ldc);
  }
}

// C (M, n) = beta*C + the product of M prepared activation rows (qa, row stride lda bytes,
// row scales sa for int8) with panels [0, ceil(n/16)) at b. Blocks of rows that stay in L2
// while a group of panels at a time passes from L1 through every strip of the block.
template <class Ops>
void quant_product(index M, index n, index groups, const std::uint8_t* qa, index lda,
                   const float* sa, const std::uint8_t* b, const float* sw,
                   const std::int32_t* offset, float beta, float* c, index ldc) {
  constexpr int MR = Ops::kRows, NP = Ops::kPanels;
  const index panel_bytes = groups * 64;
  const index panels = (n + 15) / 16;
  const index block_rows = std::max<index>(MR, 196608 / std::max<index>(lda, 1) / MR * MR);
  for (index i0 = 0; i0 < M; i0 += block_rows) {
    const index i1 = std::min(M, i0 + block_rows);
    const index group_panels = i1 - i0 == 1 ? Ops::kPanelsOneRow : NP;
    for (index p0 = 0; p0 < panels; p0 += group_panels) {
      const index np = std::min(group_panels, panels - p0), cols = std::min(n - p0 * 16, np * 16);
      for (index i = i0; i < i1; i += MR) {
        const int m = static_cast<int>(std::min<index>(MR, i1 - i));
        quant_rows<Ops, MR>(m, np, cols, groups, qa + i * lda, lda, b + p0 * panel_bytes, panel_bytes,
                            sa ? sa + i : nullptr, sw + p0 * 16, offset + p0 * 16, beta,
                            c + i * ldc + p0 * 16, ldc);
      }
    }
  }
}

}  // namespace pyrnn::PYRNN_ISA
