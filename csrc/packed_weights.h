// The Python object that holds a layer's packed weights (float, or quantized by
// bindings_quant.cpp): what layer_forward, layer_step and layer_step_if_ready take as `packed`.
// Shared by the binding files so that pybind11 sees one type.
#pragma once

#include <memory>
#include <string>

#include "pyrnn.h"

namespace pyrnn::bind {

// Weights packed once by pack_layer (or quant_pack_layer) for repeated inference calls.
struct PackedWeights {
  std::string cell_name;
  std::unique_ptr<PackedLayer> layer;
};

}  // namespace pyrnn::bind
