// The C++ contract of the xLSTM kernels (sLSTM and mLSTM layers, one layer over a whole
// sequence): dimensions and argument structs. The kernel pointers are at the end of
// KernelTable (pyrnn.h); the NumPy reference pyrnn/reference_xlstm.py states the maths.
//
// Dimension legend (row-major, time-major, as in pyrnn.h):
//   T time steps, B batch, I input features, H hidden units = NH heads x DH units.
//   sLSTM gates i, f, z, o (H rows each); mLSTM projection rows q, k, v (H each), i, f (NH
//   each: one scalar gate per head), o (H, when output_gate).
#pragma once

#include <cstdint>

#include "pyrnn.h"

namespace pyrnn {

struct SlstmDims {
  index T, B, I, H, NH;
  bool has_bias;
  bool forget_exp;       // log f = f~ (exponential forget gate) instead of logsigmoid(f~)
  bool headwise_input;   // W_ih block-diagonal over heads too: head h's gates read x[h*I/NH, ...)
  index in_cols() const { return headwise_input ? I / NH : I; }  // columns of w_ih
};

template <typename T>
struct SlstmForwardArgs {
  const T* x;                   // (T, B, I)
  const T *h0, *c0, *n0, *m0;   // (B, H) each
  const T* w_ih;                // (4H, I), or (4H, I/NH) headwise: rows as w_hh's, over head h's inputs
  const T* w_hh;                // (4H, DH)  row g*H + h*DH + j: head h's block, gate g, unit j
  const T* bias;                // (4H) or null
  const std::int64_t* lengths;  // (B) or null
  T* y;                         // (T, B, H)
  T *h_n, *c_n, *n_n, *m_n;     // (B, H) each
  T* workspace;                 // slstm_workspace_size(dims) elements, or null (inference)
};

template <typename T>
struct SlstmBackwardArgs {
  const T* x;
  const T* w_ih;
  const T* w_hh;
  const std::int64_t* lengths;
  const T* workspace;
  const T* dy;                          // (T, B, H) or null
  const T *dh_n, *dc_n, *dn_n, *dm_n;   // (B, H) or null each
  T* dx;                                // (T, B, I)
  T *dh0, *dc0, *dn0, *dm0;             // (B, H)
  T* dw_ih;                             // +=
  T* dw_hh;                             // +=
  T* db;                                // +=, null when !has_bias
};

struct MlstmDims {
  index T, B, I, H, NH;
  bool has_bias;
  bool output_gate;
  double eps;        // added to the denominator, as the official package does (1e-6)
  index rows() const { return 3 * H + 2 * NH + (output_gate ? H : 0); }
};

template <typename T>
struct MlstmForwardArgs {
  const T* x;                   // (T, B, I)
  const T* c0;                  // (B, NH, DH, DH)  C[j][i]: key unit j, value unit i (k v^T)
  const T* n0;                  // (B, NH, DH)
  const T* m0;                  // (B, NH)
  const T* w_ih;                // (rows, I)
  const T* bias;                // (rows) or null
  const std::int64_t* lengths;
  T* y;                         // (T, B, H)
  T *c_n, *n_n, *m_n;
  T* workspace;                 // mlstm_workspace_size(dims) elements, or null
};

template <typename T>
struct MlstmBackwardArgs {
  const T* x;
  const T* w_ih;
  const std::int64_t* lengths;
  const T* workspace;
  const T* dy;                   // (T, B, H) or null
  const T *dc_n, *dn_n, *dm_n;   // or null each
  T* dx;
  T *dc0, *dn0, *dm0;
  T* dw_ih;                      // +=
  T* db;                         // +=, null when !has_bias
};

}  // namespace pyrnn
