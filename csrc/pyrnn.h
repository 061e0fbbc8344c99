// pyrnn's C++ API in one place: the dimension legend, gate orders, argument structs and
// the per-ISA kernel table that the bindings dispatch through.
//
// Dimension legend (all arrays row-major, C-contiguous, time-major):
//   T  time steps          B  batch            I  input features
//   H  hidden units        P  output units of a step (P = proj_size for a projected LSTM,
//                                                     else P = H)
//   G  gates: 1 RNN, 4 LSTM (i, f, g, o), 3 GRU (r, z, n)  -- PyTorch's orders
//
// Kernels are compiled once per instruction set (baseline, avx2, avx512) into namespaces
// pyrnn::baseline, pyrnn::avx2, pyrnn::avx512; each provides `kernel_table()`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyrnn {

using index = std::int64_t;

enum class Cell : int {
  RnnTanh = 0,
  RnnRelu = 1,
  Lstm = 2,
  Gru = 3,              // reset gate applied after the recurrent product (PyTorch, cuDNN)
  GruResetBefore = 4,   // reset gate applied to h before the product (ONNX linear_before_reset=0)
};

inline int gate_count(Cell cell) {
  switch (cell) {
    case Cell::Lstm: return 4;
    case Cell::Gru:
    case Cell::GruResetBefore: return 3;
    default: return 1;
  }
}

// Shape and mode of one layer in one direction over a whole sequence.
struct LayerDims {
  Cell cell;
  index T, B, I, H, P;
  bool reverse;     // process t = T-1 .. 0 (with lengths: each sequence from its own last step)
  bool has_bias;
  bool has_proj;    // LSTM with proj_size > 0 (then P < H)
  bool has_peep = false;  // LSTM with peephole connections (w_peep)
};

// The weights of one layer and direction packed once into the panel layout of one instruction
// set's kernels (KernelTable::pack_layer), so that repeated inference calls skip the packing.
// Opaque outside the kernels that made it; the caller owns it.
struct PackedLayer {
  virtual ~PackedLayer() = default;
  const char* isa = nullptr;   // KernelTable::name of the kernels that made it
  LayerDims dims{};            // T and B unused
  bool f64 = false;
};

// Forward of one layer and direction. Outputs are written in full.
template <typename T>
struct LayerForwardArgs {
  const T* x;                // (T, B, I)
  const T* h0;               // (B, P)
  const T* c0;               // (B, H)            LSTM only, else null
  const T* w_ih;             // (G*H, I)
  const T* w_hh;             // (G*H, P)
  const T* b_ih;             // (G*H)             null when !has_bias
  const T* b_hh;             // (G*H)             null when !has_bias
  const T* w_hr;             // (P, H)            null when !has_proj
  const std::int64_t* lengths;  // (B), each in 1..T; null means all T
  T* y;                      // (T, B, P)         zero at steps past a sequence's length;
                             //                   null in inference: only h_n and c_n wanted
  T* h_n;                    // (B, P)
  T* c_n;                    // (B, H)            LSTM only, else null
  T* workspace;              // training_workspace_size(dims) elements, or null (inference)
  const PackedLayer* packed; // the weights above packed by this ISA's pack_layer, or null
  // (3*H) peephole weights p_i, p_f, p_o (ONNX's P): i and f add p * c_{t-1} to their
  // pre-activation, o adds p_o * c_t. Null when !has_peep.
  const T* w_peep = nullptr;
};

// Backpropagation through time of one layer and direction, through the forward call that
// filled `workspace`. Weight and bias gradients are accumulated (+=); the rest written.
template <typename T>
struct LayerBackwardArgs {
  const T* x;                // (T, B, I)         the forward's input
  const T* w_ih;             // (G*H, I)
  const T* w_hh;             // (G*H, P)
  const T* w_hr;             // (P, H)            null when !has_proj
  const std::int64_t* lengths;  // (B) or null, as in the forward
  const T* workspace;        // as filled by the forward
  const T* dy;               // (T, B, P)         or null (zeros)
  const T* dh_n;             // (B, P)            or null (zeros)
  const T* dc_n;             // (B, H)            or null (zeros); LSTM only
  T* dx;                     // (T, B, I)         or null (not wanted)
  T* dh0;                    // (B, P)
  T* dc0;                    // (B, H)            LSTM only, else null
  T* dw_ih;                  // (G*H, I)          +=
  T* dw_hh;                  // (G*H, P)          +=
  T* db_ih;                  // (G*H)             +=, null when !has_bias
  T* db_hh;                  // (G*H)             +=, null when !has_bias
  T* dw_hr;                  // (P, H)            +=, null when !has_proj
  const T* w_peep = nullptr; // (3*H)             null when !has_peep
  T* dw_peep = nullptr;      // (3*H)             +=, null when !has_peep
};

// xLSTM (csrc/xlstm_api.h)
struct SlstmDims;
struct MlstmDims;
template <typename T> struct SlstmForwardArgs;
template <typename T> struct SlstmBackwardArgs;
template <typename T> struct MlstmForwardArgs;
template <typename T> struct MlstmBackwardArgs;

enum class MathFn : int { Exp = 0, Sigmoid = 1, Tanh = 2 };

// Everything one instruction set provides. Chosen once at import (csrc/isa.cpp).
struct KernelTable {
  const char* name;

  // Elements of the training workspace a forward call needs for `dims`.
  index (*training_workspace_size)(const LayerDims& dims);

  // The weights of `args` (x, states and outputs unused) packed for this ISA; caller owns it.
  PackedLayer* (*pack_layer_f32)(const LayerDims&, const LayerForwardArgs<float>&);
  PackedLayer* (*pack_layer_f64)(const LayerDims&, const LayerForwardArgs<double>&);
  void (*layer_forward_f32)(const LayerDims&, const LayerForwardArgs<float>&);
  void (*layer_forward_f64)(const LayerDims&, const LayerForwardArgs<double>&);
  // One step (dims.T == 1) for streaming inference on args.packed alone (the natural weights
  // are not read); y may be the same buffer as h_n.
  void (*layer_step_f32)(const LayerDims&, const LayerForwardArgs<float>&);
  void (*layer_step_f64)(const LayerDims&, const LayerForwardArgs<double>&);
  void (*layer_backward_f32)(const LayerDims&, const LayerBackwardArgs<float>&);
  void (*layer_backward_f64)(const LayerDims&, const LayerBackwardArgs<double>&);

  // C(M,N) = beta*C + op(A)(M,K) op(B)(K,N); op transposes when the flag is set.
  void (*gemm_f32)(bool trans_a, bool trans_b, index M, index N, index K, const float* A,
                   index lda, const float* B, index ldb, float beta, float* C, index ldc);
  void (*gemm_f64)(bool trans_a, bool trans_b, index M, index N, index K, const double* A,
                   index lda, const double* B, index ldb, double beta, double* C, index ldc);

  // y[i] = fn(x[i]) with the vectorised approximations the cells use (x == y allowed).
  void (*math_f32)(MathFn fn, index n, const float* x, float* y);
  void (*math_f64)(MathFn fn, index n, const double* x, double* y);

  // xLSTM layers (csrc/xlstm_api.h): sLSTM and mLSTM forward and BPTT over a whole sequence.
  index (*slstm_workspace_size)(const SlstmDims&);
  void (*slstm_forward_f32)(const SlstmDims&, const SlstmForwardArgs<float>&);
  void (*slstm_forward_f64)(const SlstmDims&, const SlstmForwardArgs<double>&);
  void (*slstm_backward_f32)(const SlstmDims&, const SlstmBackwardArgs<float>&);
  void (*slstm_backward_f64)(const SlstmDims&, const SlstmBackwardArgs<double>&);
  index (*mlstm_workspace_size)(const MlstmDims&);
  void (*mlstm_forward_f32)(const MlstmDims&, const MlstmForwardArgs<float>&);
  void (*mlstm_forward_f64)(const MlstmDims&, const MlstmForwardArgs<double>&);
  void (*mlstm_backward_f32)(const MlstmDims&, const MlstmBackwardArgs<float>&);
  void (*mlstm_backward_f64)(const MlstmDims&, const MlstmBackwardArgs<double>&);
};

namespace baseline { const KernelTable& kernel_table(); }
namespace avx2 { const KernelTable& kernel_table(); }
namespace avx512 { const KernelTable& kernel_table(); }

// The table in use (set once at import, overridable with PYRNN_ISA) and introspection.
const KernelTable& active_kernels();
const char* active_isa();
bool isa_available(const char* name);   // compiled in and supported by this CPU
void select_isa(const char* name);      // throws std::invalid_argument if unavailable

// Threads used by native calls (default: OpenMP's default; the Python package sets the cores
// this process may use at import). In a process forked after a team of threads ran, OpenMP's
// pool is unusable (its threads were not copied): num_threads() is then 1 whatever was set.
int num_threads();
void set_num_threads(int n);
bool fork_limited();

// The ways kernels divide one call's work among threads. note_split records each run of a
// team of more than one thread (which also marks that OpenMP's pool exists, see fork_limited);
// tests read the counts to know that a split they meant to reach ran.
enum class SplitKind : int {
  GemmRows,      // a product's output rows split among threads
  GemmColumns,   // its output columns split
  GemmGrid,      // both: a 2-D grid of output blocks
  LoopUnits,     // a recurrent time loop split by hidden units (a barrier or a shared counter per step)
  LoopTakeover,  // a thread of a units-split loop took an item of another thread's home range
  LoopRows,      // a time loop split by batch rows
  Tasks,         // independent products shared out whole (parallel_tasks)
  XlstmItems,    // sLSTM (head, batch block) items or mLSTM (row, head) pairs
  Elementwise,   // an element-wise pass split into chunks
  Count
};
void note_split(SplitKind kind);
long split_count(SplitKind kind);
void reset_split_counts();

// What tests may change about how kernels split work: every threshold on the work a thread
// needs is multiplied by work_scale (1 in production; 0 splits any work, so that small shapes
// reach every split), loop_split forces how time loops split (Auto: by their plan), and
// absent_thread (>= 0) takes no item of a loop shared step by step (kernels/step_tickets.h), as a
// descheduled thread would not, so that the others take over its share.
enum class ForcedSplit : int { Auto, Units, Rows };
struct ThreadTesting {
  double work_scale = 1.0;
  ForcedSplit loop_split = ForcedSplit::Auto;
  int absent_thread = -1;
};
const ThreadTesting& thread_testing();
void set_thread_testing(const ThreadTesting& t);

// Bytes of input projection an inference call computes ahead of its steps (default 16 MB; at
// least one step's). Settable for tests, which need several chunks at small sizes.
index input_chunk_bytes();
void set_input_chunk_bytes(index bytes);

}  // namespace pyrnn
