// TEMPORARY: replaced by the real layer kernels in the next commits.
#include "kernels/layer.h"
#include <stdexcept>
namespace pyrnn::PYRNN_ISA {
index training_workspace_size(const LayerDims&) { return 0; }
template <typename T> void layer_forward(const LayerDims&, const LayerForwardArgs<T>&) { throw std::runtime_error("layer kernels not written yet"); }
template <typename T> void layer_backward(const LayerDims&, const LayerBackwardArgs<T>&) { throw std::runtime_error("layer kernels not written yet"); }
template void layer_forward<float>(const LayerDims&, const LayerForwardArgs<float>&);
template void layer_forward<double>(const LayerDims&, const LayerForwardArgs<double>&);
template void layer_backward<float>(const LayerDims&, const LayerBackwardArgs<float>&);
template void layer_backward<double>(const LayerDims&, const LayerBackwardArgs<double>&);
}
