// The C++ contract of quantized inference (docs/quantization.md): the weights a quantized
// layer is packed from, and the packing entry point of each ISA family. The packed layer is an
// ordinary PackedLayer whose panels are quantized (csrc/kernels/quant.h), so the float time
// loops (KernelTable::layer_forward_f32 / layer_step_f32) run it unchanged.
#pragma once

#include <cstdint>

#include "pyrnn.h"

namespace pyrnn {

enum class QuantType : int { Int8 = 1, Bf16 = 2 };

// One layer and direction; dims as pyrnn.h (T, B, reverse unused). Weights row-major, int8
// (Int8, with one float scale per row) or bfloat16 bits (Bf16, no scales).
struct QuantLayerArgs {
  const void* w_ih;     // (G*H, I)
  const float* s_ih;    // (G*H)
  const void* w_hh;     // (G*H, P)
  const float* s_hh;    // (G*H)
  const void* w_hr;     // (P, H)    null when !has_proj
  const float* s_hr;    // (P)
  const float* b_ih;    // (G*H)     float32, null when !has_bias
  const float* b_hh;    // (G*H)
};

// The packed layer (caller owns it), recording `isa` (the active ISA's name) as its maker.
// native_dot: use the dot-product instructions of the ISA family (vpdpbusd, vdpbf16ps).
// quant_matmul: c (M, N) = a (M, K) w^T for w (N, K) as the layers multiply (for tests).
#define PYRNN_DECLARE_QUANT_PACK(isa)                                                        \
  namespace isa {                                                                            \
  PackedLayer* pack_quant_layer(QuantType type, bool native_dot, const char* maker,          \
                                const LayerDims& dims, const QuantLayerArgs& args);          \
  void quant_matmul(QuantType type, bool native_dot, index M, index N, index K,             \
                    const float* a, const void* w, const float* scales, float* c);           \
  }
PYRNN_DECLARE_QUANT_PACK(baseline)
PYRNN_DECLARE_QUANT_PACK(avx2)
PYRNN_DECLARE_QUANT_PACK(avx512)
#undef PYRNN_DECLARE_QUANT_PACK

// The quantized kernels of the active ISA: which family packs, and whether it has the int8
// (vpdpbusd) and bf16 (vdpbf16ps) dot-product instructions.
struct QuantKernels {
  PackedLayer* (*pack)(QuantType, bool, const char*, const LayerDims&, const QuantLayerArgs&);
  void (*matmul)(QuantType, bool, index, index, index, const float*, const void*, const float*, float*);
  bool int8_dot;
  bool bf16_dot;
};
QuantKernels active_quant_kernels();

}  // namespace pyrnn
