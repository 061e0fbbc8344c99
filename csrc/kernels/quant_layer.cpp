// Packing of a quantized layer: the same panels as the float layer's pack_layer (gate-blocked
// recurrent and input weights, projection, folded bias), quantized (quant.h). The float time
// loops of layer_forward.cpp then run it: their products (gemm_packed) see quantized panels.
#include <vector>

#include "kernels/layer_plan.h"
#include "kernels/packed_layer.h"
#include "kernels/quant.h"
#include "quant_api.h"

namespace pyrnn::PYRNN_ISA {
namespace {

// Rows of W (G*H, K) in gate-blocked column order (as pack_gate_blocked in layer_plan.h).
std::vector<index> gate_blocked_rows(index G, const UnitBlocks& blocks) {
  std::vector<index> rows;
  for (index j = 0; j < blocks.count; ++j)
    for (index g = 0; g < G; ++g)
      for (index u = blocks.begin(j); u < blocks.end(j); ++u) rows.push_back(g * blocks.total + u);
  return rows;
}

std::vector<index> row_range(index first, index count) {
  std::vector<index> rows(static_cast<size_t>(count));
  for (index r = 0; r < count; ++r) rows[r] = first + r;
  return rows;
}

}  // namespace

PackedLayer* pack_quant_layer(QuantType type, bool native_dot, const char* maker, const LayerDims& d,
                              const QuantLayerArgs& a) {
  auto* out = new PackedLayerWeights<float>();
  out->isa = maker;
  out->dims = d;
  out->f64 = false;
  const QuantKind kind = type == QuantType::Int8 ? QuantKind::Int8 : QuantKind::Bf16;
  const index element = kind == QuantKind::Int8 ? 1 : 2;
  const index H = d.H, P = d.P, G = gate_count(d.cell);
  const UnitBlocks blocks(H, unit_block_width<float>());
  // Packs the rows `order` of W (rows of K elements, scales s) as the columns of dst.
  auto pack = [&](const void* w, const float* s, index K, const std::vector<index>& order, PackedB<float>& dst) {
    std::vector<const void*> rows;
    std::vector<float> scales;
    for (index r : order) {
      rows.push_back(static_cast<const char*>(w) + r * K * element);
      scales.push_back(s ? s[r] : 1.0f);
    }
    dst.K = K;
    dst.N = static_cast<index>(order.size());
    pack_quant_rows(kind, native_dot, K, dst.N, rows.data(), scales.data(), dst.quant);
  };
  if (d.cell == Cell::GruResetBefore) {
    pack(a.w_hh, a.s_hh, P, gate_blocked_rows(2, blocks), out->w_rec);
    pack(a.w_hh, a.s_hh, P, row_range(2 * H, H), out->w_rec_n);
  } else {
    pack(a.w_hh, a.s_hh, P, gate_blocked_rows(G, blocks), out->w_rec);
  }
  if (d.has_proj) pack(a.w_hr, a.s_hr, H, row_range(0, P), out->w_proj);
  pack(a.w_ih, a.s_ih, d.I, gate_blocked_rows(G, blocks), out->w_in);
  LayerForwardArgs<float> biases{};
  biases.b_ih = a.b_ih;
  biases.b_hh = a.b_hh;
  out->bias.resize(static_cast<size_t>(G * H));
  for (index k = 0; k < G * H; ++k) out->bias[k] = folded_bias(d, biases, k);
  if (d.has_bias) out->b_hh.assign(a.b_hh, a.b_hh + G * H);
  return out;
}

void quant_matmul(QuantType type, bool native_dot, index M, index N, index K, const float* a, const void* w,
                  const float* scales, float* c) {
  const QuantKind kind = type == QuantType::Int8 ? QuantKind::Int8 : QuantKind::Bf16;
  std::vector<const void*> rows;
  for (index n = 0; n < N; ++n) rows.push_back(static_cast<const char*>(w) + n * K * (kind == QuantKind::Int8 ? 1 : 2));
  QuantPanels panels;
  pack_quant_rows(kind, native_dot, K, N, rows.data(), scales, panels);
  quant_gemm_packed(M, 0, N, a, K, panels, 0.0f, c, N);
}

}  // namespace pyrnn::PYRNN_ISA
