// One recurrent layer in one direction over a whole sequence: forward and BPTT.
#pragma once

#include "kernels/common.h"

namespace pyrnn::PYRNN_ISA {

index training_workspace_size(const LayerDims& dims);

template <typename T>
void layer_forward(const LayerDims& dims, const LayerForwardArgs<T>& args);

// The weights of args packed for this instruction set (caller owns the result).
template <typename T>
PackedLayer* pack_layer(const LayerDims& dims, const LayerForwardArgs<T>& args);

// One step of a layer (dims.T == 1, no lengths, no workspace) for streaming inference, on
// args.packed from pack_layer.
template <typename T>
void layer_step(const LayerDims& dims, const LayerForwardArgs<T>& args);

template <typename T>
void layer_backward(const LayerDims& dims, const LayerBackwardArgs<T>& args);

}  // namespace pyrnn::PYRNN_ISA
