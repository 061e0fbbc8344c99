// The weights of one layer and direction in the panel layouts the time loops multiply with.
// A forward call packs the recurrent weights itself, or takes them from a PackedLayer made
// once by pack_layer (inference with unchanged weights: every later call and step skips the
// packing, and a step streams panels instead of natural rows).
#pragma once

#include "kernels/common.h"
#include "kernels/gemm.h"
#include "vec/aligned.h"

namespace pyrnn::PYRNN_ISA {

template <typename T>
struct PackedLayerWeights : PackedLayer {
  PackedB<T> w_in;        // gate-blocked W_ih^T (I, G*H): a step's input product (pack_layer)
  PackedB<T> w_rec;       // gate-blocked W_hh^T (P, Gr*H); GRU reset-before: r, z rows only
  PackedB<T> w_rec_n;     // GRU reset-before: W_hn^T (H, H)
  PackedB<T> w_proj;      // projected LSTM: W_hr^T (H, P)
  AlignedVector<T> bias;  // (G*H) folded bias of the input projection (pack_layer)
  AlignedVector<T> b_hh;  // (G*H) GRU's b_hn lives in here: a step adds it itself (pack_layer)
  AlignedVector<T> peep;  // (3*H) peephole LSTM: p_i, p_f, p_o (empty without peepholes)
};

// The bias of gate column k that folds into the input projection: everything except GRU's
// b_hn when the reset gate multiplies h W_hn^T + b_hn (added per step instead).
template <typename T>
T folded_bias(const LayerDims& d, const LayerForwardArgs<T>& a, index k) {
  if (!d.has_bias) return T(0);
  const bool hh = !(d.cell == Cell::Gru && k >= 2 * d.H);
  return a.b_ih[k] + (hh ? a.b_hh[k] : T(0));
}

}  // namespace pyrnn::PYRNN_ISA
