// The kernel table of the instruction set this file is compiled for (PYRNN_ISA).
#include "kernels/common.h"
#include "kernels/gemm.h"
#include "kernels/layer.h"
#include "kernels/math.h"
#include "kernels/xlstm.h"

namespace pyrnn::PYRNN_ISA {
namespace {

template <typename T>
void math_dispatch(MathFn fn, index n, const T* x, T* y) {
  switch (fn) {
    case MathFn::Exp: vexp(n, x, y); break;
    case MathFn::Sigmoid: vsigmoid(n, x, y); break;
    case MathFn::Tanh: vtanh(n, x, y); break;
  }
}

}  // namespace

const KernelTable& kernel_table() {
  static const KernelTable table = {
      PYRNN_ISA_NAME,
      &training_workspace_size,
      &pack_layer<float>,
      &pack_layer<double>,
      &layer_forward<float>,
      &layer_forward<double>,
      &layer_step<float>,
      &layer_step<double>,
      &layer_backward<float>,
      &layer_backward<double>,
      &gemm<float>,
      &gemm<double>,
      &math_dispatch<float>,
      &math_dispatch<double>,
      &slstm_workspace_size,
      &slstm_forward<float>,
      &slstm_forward<double>,
      &slstm_backward<float>,
      &slstm_backward<double>,
      &mlstm_workspace_size,
      &mlstm_forward<float>,
      &mlstm_forward<double>,
      &mlstm_backward<float>,
      &mlstm_backward<double>,
  };
  return table;
}

}  // namespace pyrnn::PYRNN_ISA
