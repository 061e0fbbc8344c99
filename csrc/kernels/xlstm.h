// sLSTM and mLSTM layers in one direction over a whole sequence: forward and BPTT.
// Contract in csrc/xlstm_api.h; maths in pyrnn/reference_xlstm.py.
#pragma once

#include "kernels/common.h"
#include "xlstm_api.h"

namespace pyrnn::PYRNN_ISA {

index slstm_workspace_size(const SlstmDims& d);
template <typename T> void slstm_forward(const SlstmDims& d, const SlstmForwardArgs<T>& a);
template <typename T> void slstm_backward(const SlstmDims& d, const SlstmBackwardArgs<T>& a);

index mlstm_workspace_size(const MlstmDims& d);
template <typename T> void mlstm_forward(const MlstmDims& d, const MlstmForwardArgs<T>& a);
template <typename T> void mlstm_backward(const MlstmDims& d, const MlstmBackwardArgs<T>& a);

}  // namespace pyrnn::PYRNN_ISA
