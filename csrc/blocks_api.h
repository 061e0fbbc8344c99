// The building blocks' kernels (csrc/kernels/blocks*.cpp): the dense products and element-wise
// passes of Linear, Embedding, activations, attention, losses and optimizers, so that a
// training or decoding step runs on pyrnn's kernels and threads alone (no BLAS of NumPy's).
//
// Dimension legend: M rows, N columns (features, classes), K the inner dimension of a product,
// S independent products of a batch. Arrays row-major, C-contiguous unless a stride is given.
// Every kernel's result is bitwise identical for any thread count (csrc/kernels/parallel.h).
#pragma once

#include <cstdint>

#include "pyrnn.h"

namespace pyrnn {

enum class Activation : int { Identity = 0, Tanh = 1, Sigmoid = 2, Relu = 3, LeakyRelu = 4 };

template <typename T>
struct BlockOps {
  // S products C_s(M,N) = beta*C_s + op(A_s)(M,K) op(B_s)(K,N); item s at A + s*sa, B + s*sb,
  // C + s*sc (as KernelTable::gemm for each). sb = 0 shares one B among all items.
  void (*batched_gemm)(index S, bool trans_a, bool trans_b, index M, index N, index K,
                       const T* A, index lda, index sa, const T* B, index ldb, index sb, T beta,
                       T* C, index ldc, index sc);
  // Y(M,N) = X(M,K) W(N,K)^T + bias(N)   (bias may be null)
  void (*linear)(index M, index N, index K, const T* X, const T* W, const T* bias, T* Y);
  // out(N) += sum over rows of X(M,N), each column summed in row order
  void (*column_sums)(index M, index N, const T* X, T* out);
  // y(n) = f(x(n)); slope is LeakyRelu's (x == y allowed)
  void (*activation_forward)(Activation f, T slope, index n, const T* x, T* y);
  // dx(n) = f'(x) * dy from the forward's x and y = f(x) (dx == dy allowed)
  void (*activation_backward)(Activation f, T slope, index n, const T* x, const T* y,
                              const T* dy, T* dx);
  // Y(M,N) = softmax (or log-softmax when `log`) of each row of X(M,N); -inf entries get 0
  void (*softmax)(bool log, index M, index N, const T* X, T* Y);
  // DX(M,N) = Y * (DY - rowsum(DY * Y)): the softmax's backward from its output Y
  void (*softmax_backward)(index M, index N, const T* Y, const T* DY, T* DX);
  // Softmax cross-entropy of logits L(M,N) against targets(M) in 0..N-1, with label smoothing
  // eps: loss(M) = (1-eps) * nll + eps * mean over classes of -log p (in float64), and
  // DL(M,N) = (softmax(L) - (1-eps) * onehot - eps/N) * scale(M)
  void (*cross_entropy)(index M, index N, const T* L, const std::int64_t* targets,
                        const T* scale, T eps, double* loss, T* DL);
  // Adam in place over n elements (torch.optim.Adam / AdamW order of operations); `step` >= 1
  void (*adam)(index n, T* p, const T* g, T* m, T* v, double lr, double beta1, double beta2,
               double eps, double weight_decay, bool decoupled, std::int64_t step);
  // SGD in place (torch.optim.SGD); buf null without momentum; `first` initialises buf to d
  void (*sgd)(index n, T* p, const T* g, T* buf, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first);
  // DW(rows, N) row ids(i) += DY(i, :) for i in 0..M-1 in order, skipping rows == skip
  void (*embedding_backward)(index M, index N, const std::int64_t* ids, const T* DY,
                             std::int64_t skip, T* DW);
  // sum of x(n)^2 in float64, blocks of fixed size summed in order
  double (*sum_squares)(index n, const T* x);
};

struct BlocksTable {
  const char* name;   // the instruction set, as KernelTable::name
  BlockOps<float> f32;
  BlockOps<double> f64;
};

namespace baseline { const BlocksTable& blocks_table(); }
namespace avx2 { const BlocksTable& blocks_table(); }
namespace avx512 { const BlocksTable& blocks_table(); }

}  // namespace pyrnn
