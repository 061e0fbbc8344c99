// The building blocks' kernels (declared in csrc/blocks_api.h), compiled once per ISA.
//
// Products go to the GEMM (kernels/gemm.cpp, which owns its threads and its determinism
// rule). The element-wise passes split their items (elements, rows or columns) with
// for_chunks; every item is computed by the same vector code wherever it falls (loop tails
// use partial loads and stores of the same Vec), so results do not depend on the split.
// Reductions stay inside one item (a row's softmax, a column's sum) or sum fixed-size blocks
// in a fixed order (sum_squares).
#include <cmath>
#include <limits>
#include <vector>

#include "blocks_api.h"
#include "kernels/common.h"
#include "kernels/gemm.h"
#include "kernels/parallel.h"
#include "vec/lanes.h"
#include "vec/vec.h"
#include "vec/vec_math.h"

namespace pyrnn::PYRNN_ISA {
namespace {

// Items below which a pass stays on one thread: about 10 microseconds of streaming work.
constexpr index kElementGrain = index(1) << 15;
// Flops per thread below which a batch of products stays on one thread (as the GEMM's rule).
constexpr double kProductGrainFlops = double(1 << 22);

template <typename T>
T lane_max(Vec<T> v) {
  T lanes[Vec<T>::width];
  v.storeu(lanes);
  T m = lanes[0];
  for (int i = 1; i < Vec<T>::width; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}

// f(i, lanes) for each vector of [begin, end): lanes.m == width except a partial last one.
template <typename T, typename F>
PYRNN_ALWAYS_INLINE void each_vector(index begin, index end, F&& f) {
  constexpr int W = Vec<T>::width;
  index i = begin;
  for (; i + W <= end; i += W) f(i, Lanes<T>{W});
  if (i < end) f(i, Lanes<T>{static_cast<int>(end - i)});
}

// A lane-wise pass y = f(x...) over n elements, split across threads.
template <typename T, typename F>
void map_elements(index n, F&& f) {
  for_chunks(n, kElementGrain, [&](index begin, index end) {
    each_vector<T>(begin, end, [&](index i, Lanes<T> l) { f(i, l); });
  });
}

// ---------------------------------------------------------------------------------------------
// products

template <typename T>
void batched_gemm(index S, bool trans_a, bool trans_b, index M, index N, index K, const T* A,
                  index lda, index sa, const T* B, index ldb, index sb, T beta, T* C, index ldc,
                  index sc) {
  if (S <= 0) return;
  auto one = [&](index s) {
    gemm(trans_a, trans_b, M, N, K, A + s * sa, lda, B + s * sb, ldb, beta, C + s * sc, ldc);
  };
  if (S == 1) return one(0);
  // Each item's product is computed whole by one thread (gemm runs serially inside the
  // region), so an item's bits do not depend on which thread took it.
  const double flops = std::max(1.0, 2.0 * double(M) * double(N) * double(K));
  const index grain = std::max<index>(1, static_cast<index>(kProductGrainFlops / flops));
  for_chunks(S, grain, [&](index begin, index end) {
    for (index s = begin; s < end; ++s) one(s);
  }, 1);
}

template <typename T>
void linear(index M, index N, index K, const T* X, const T* W, const T* bias, T* Y) {
  if (M <= 0 || N <= 0) return;
  if (bias != nullptr) {
    for_chunks(M, std::max<index>(1, kElementGrain / N), [&](index begin, index end) {
      for (index i = begin; i < end; ++i) std::copy(bias, bias + N, Y + i * N);
    }, 1);
  }
  gemm(false, true, M, N, K, X, K, W, K, bias != nullptr ? T(1) : T(0), Y, N);
}

template <typename T>
void column_sums(index M, index N, const T* X, T* out) {
  using V = Vec<T>;
  constexpr int W = V::width, kVectors = 8;
  for_chunks(N, std::max<index>(W, kElementGrain / std::max<index>(M, 1)), [&](index begin, index end) {
    for (index j0 = begin; j0 < end; j0 += kVectors * W) {
      const index j1 = std::min(end, j0 + kVectors * W);
      V acc[kVectors];
      for (auto& a : acc) a = V::zero();
      for (index i = 0; i < M; ++i) {
        const T* row = X + i * N;
        int v = 0;
        each_vector<T>(j0, j1, [&](index j, Lanes<T> l) { acc[v] = acc[v] + l.load(row + j); ++v; });
      }
      int v = 0;
      each_vector<T>(j0, j1, [&](index j, Lanes<T> l) {
        l.store(l.load(out + j) + acc[v], out + j);
        ++v;
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// activations

template <typename T>
void activation_forward(Activation f, T slope, index n, const T* x, T* y) {
  using V = Vec<T>;
  const V zero = V::zero(), vslope = V::broadcast(slope);
  map_elements<T>(n, [&](index i, Lanes<T> l) {
    const V xv = l.load(x + i);
    V r = xv;
    switch (f) {
      case Activation::Identity: break;
      case Activation::Tanh: r = tanh_v(xv); break;
      case Activation::Sigmoid: r = sigmoid_v(xv); break;
      case Activation::Relu: r = max(zero, xv); break;  // lets NaN through
      case Activation::LeakyRelu: r = select(less(xv, zero), xv * vslope, xv); break;
    }
    l.store(r, y + i);
  });
}

template <typename T>
void activation_backward(Activation f, T slope, index n, const T* x, const T* y, const T* dy, T* dx) {
  using V = Vec<T>;
  const V zero = V::zero(), one = V::broadcast(T(1)), vslope = V::broadcast(slope);
  map_elements<T>(n, [&](index i, Lanes<T> l) {
    const V d = l.load(dy + i);
    V r = d;
    switch (f) {
      case Activation::Identity: break;
      case Activation::Tanh: { const V yv = l.load(y + i); r = d * (one - yv * yv); break; }
      case Activation::Sigmoid: { const V yv = l.load(y + i); r = d * yv * (one - yv); break; }
      case Activation::Relu: r = select(less(zero, l.load(x + i)), d, zero); break;
      case Activation::LeakyRelu: r = select(less(zero, l.load(x + i)), d, d * vslope); break;
    }
    l.store(r, dx + i);
  });
}

// ---------------------------------------------------------------------------------------------
// softmax and cross-entropy (a row is one item)

// The c values at p, the lanes past them set to `fill`.
template <typename T>
Vec<T> load_filled(const T* p, int c, T fill) {
  if (c == Vec<T>::width) return Vec<T>::loadu(p);
  T lanes[Vec<T>::width];
  for (int l = 0; l < Vec<T>::width; ++l) lanes[l] = l < c ? p[l] : fill;
  return Vec<T>::loadu(lanes);
}

template <typename T>
T row_max(index N, const T* x) {
  const T lowest = -std::numeric_limits<T>::infinity();
  Vec<T> m = Vec<T>::broadcast(lowest);
  each_vector<T>(0, N, [&](index j, Lanes<T> l) { m = max(m, load_filled(x + j, l.m, lowest)); });
  return lane_max(m);
}

// e(N) = exp(x - shift); returns the sum of e (lane partial sums, then lanes in order). Lanes
// past N are -inf, whose exp adds 0.
template <typename T>
T exp_shifted(index N, const T* x, T shift, T* e) {
  using V = Vec<T>;
  const V vs = V::broadcast(shift);
  V acc = V::zero();
  each_vector<T>(0, N, [&](index j, Lanes<T> l) {
    const V ev = exp_v(load_filled(x + j, l.m, -std::numeric_limits<T>::infinity()) - vs);
    acc = acc + ev;
    l.store(ev, e + j);
  });
  return hsum(acc);
}

template <typename T>
index row_grain(index N) {
  return std::max<index>(1, kElementGrain / std::max<index>(N, 1));
}

template <typename T>
void softmax(bool log, index M, index N, const T* X, T* Y) {
  using V = Vec<T>;
  for_chunks(M, row_grain<T>(N), [&](index begin, index end) {
    for (index i = begin; i < end; ++i) {
      const T* x = X + i * N;
      T* y = Y + i * N;
      const T mx = row_max(N, x);
      const T sum = exp_shifted(N, x, mx, y);
      if (log) {
        const V shift = V::broadcast(mx + static_cast<T>(std::log(sum)));
        each_vector<T>(0, N, [&](index j, Lanes<T> l) { l.store(l.load(x + j) - shift, y + j); });
      } else {
        const V vsum = V::broadcast(sum);
        each_vector<T>(0, N, [&](index j, Lanes<T> l) { l.store(l.load(y + j) / vsum, y + j); });
      }
    }
  }, 1);
}

template <typename T>
void softmax_backward(index M, index N, const T* Y, const T* DY, T* DX) {
  using V = Vec<T>;
  for_chunks(M, row_grain<T>(N), [&](index begin, index end) {
    for (index i = begin; i < end; ++i) {
      const T* y = Y + i * N;
      const T* dy = DY + i * N;
      V acc = V::zero();
      each_vector<T>(0, N, [&](index j, Lanes<T> l) { acc = fma(l.load(dy + j), l.load(y + j), acc); });
      const V s = V::broadcast(hsum(acc));
      each_vector<T>(0, N, [&](index j, Lanes<T> l) {
        l.store(l.load(y + j) * (l.load(dy + j) - s), DX + i * N + j);
      });
    }
  }, 1);
}

template <typename T>
void cross_entropy(index M, index N, const T* L, const std::int64_t* targets, const T* scale, T eps,
                   double* loss, T* DL) {
  using V = Vec<T>;
  for_chunks(M, row_grain<T>(N), [&](index begin, index end) {
    for (index i = begin; i < end; ++i) {
      const T* x = L + i * N;
      T* d = DL + i * N;
      const T mx = row_max(N, x);
      const T sum = exp_shifted(N, x, mx, d);
      const double lse = double(mx) + std::log(double(sum));
      const std::int64_t t = targets[i];
      double row = lse - double(x[t]);
      if (eps != T(0)) {
        V acc = V::zero();
        each_vector<T>(0, N, [&](index j, Lanes<T> l) { acc = acc + l.load(x + j); });
        const double mean = double(hsum(acc)) / double(N);
        row = (1.0 - double(eps)) * row + double(eps) * (lse - mean);
      }
      loss[i] = row;
      const V inv = V::broadcast(T(1) / sum), floor = V::broadcast(eps / T(N));
      const V s = V::broadcast(scale[i]);
      each_vector<T>(0, N, [&](index j, Lanes<T> l) { l.store((l.load(d + j) * inv - floor) * s, d + j); });
      d[t] -= (T(1) - eps) * scale[i];
    }
  }, 1);
}

// ---------------------------------------------------------------------------------------------
// optimizers

template <typename T>
void adam(index n, T* p, const T* g, T* m, T* v, double lr, double beta1, double beta2, double eps,
          double weight_decay, bool decoupled, std::int64_t step) {
  using V = Vec<T>;
  const V b1 = V::broadcast(T(beta1)), c1 = V::broadcast(T(1 - beta1));
  const V b2 = V::broadcast(T(beta2)), c2 = V::broadcast(T(1 - beta2));
  const V step_size = V::broadcast(T(lr / (1 - std::pow(beta1, double(step)))));
  const V correction2 = V::broadcast(T(1 - std::pow(beta2, double(step))));
  const V veps = V::broadcast(T(eps));
  const V wd = V::broadcast(T(weight_decay)), shrink = V::broadcast(T(1 - lr * weight_decay));
  const bool l2 = weight_decay != 0 && !decoupled, decay = weight_decay != 0 && decoupled;
  map_elements<T>(n, [&](index i, Lanes<T> l) {
    V pv = l.load(p + i), gv = l.load(g + i);
    if (decay) pv = pv * shrink;
    if (l2) gv = gv + wd * pv;
    const V mv = l.load(m + i) * b1 + c1 * gv;
    const V vv = l.load(v + i) * b2 + c2 * (gv * gv);
    const V denom = sqrt(vv / correction2) + veps;
    l.store(mv, m + i);
    l.store(vv, v + i);
    l.store(pv - step_size * mv / denom, p + i);
  });
}

template <typename T>
void sgd(index n, T* p, const T* g, T* buf, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov, bool first) {
  using V = Vec<T>;
  const V vlr = V::broadcast(T(lr)), mom = V::broadcast(T(momentum));
  const V damp = V::broadcast(T(1 - dampening)), wd = V::broadcast(T(weight_decay));
  const bool has_wd = weight_decay != 0, has_mom = buf != nullptr;
  map_elements<T>(n, [&](index i, Lanes<T> l) {
    const V pv = l.load(p + i);
    V d = l.load(g + i);
    if (has_wd) d = d + wd * pv;
    if (has_mom) {
      const V b = first ? d : l.load(buf + i) * mom + damp * d;
      l.store(b, buf + i);
      d = nesterov ? d + mom * b : b;
    }
    l.store(pv - vlr * d, p + i);
  });
}

// ---------------------------------------------------------------------------------------------
// embedding and norms

template <typename T>
void embedding_backward(index M, index N, const std::int64_t* ids, const T* DY, std::int64_t skip, T* DW) {
  // Columns split across threads: each row of DW receives its rows of DY in order.
  for_chunks(N, std::max<index>(Vec<T>::width, kElementGrain / std::max<index>(M, 1)),
             [&](index begin, index end) {
    for (index i = 0; i < M; ++i) {
      if (ids[i] == skip) continue;
      T* dst = DW + ids[i] * N;
      const T* src = DY + i * N;
      each_vector<T>(begin, end, [&](index j, Lanes<T> l) { l.store(l.load(dst + j) + l.load(src + j), dst + j); });
    }
  });
}

template <typename T>
double sum_squares(index n, const T* x) {
  using V = Vec<T>;
  constexpr index kBlock = 4096;
  const index blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  for_chunks(blocks, std::max<index>(1, kElementGrain / kBlock), [&](index b0, index b1) {
    for (index b = b0; b < b1; ++b) {
      V acc = V::zero();
      each_vector<T>(b * kBlock, std::min(n, (b + 1) * kBlock), [&](index i, Lanes<T> l) {
        const V v = l.load(x + i);
        acc = fma(v, v, acc);
      });
      partial[static_cast<size_t>(b)] = double(hsum(acc));
    }
  }, 1);
  double s = 0;
  for (double v : partial) s += v;
  return s;
}

template <typename T>
constexpr BlockOps<T> ops() {
  return {&batched_gemm<T>, &linear<T>, &column_sums<T>, &activation_forward<T>,
          &activation_backward<T>, &softmax<T>, &softmax_backward<T>, &cross_entropy<T>,
          &adam<T>, &sgd<T>, &embedding_backward<T>, &sum_squares<T>};
}

}  // namespace

const BlocksTable& blocks_table() {
  static const BlocksTable table = {PYRNN_ISA_NAME, ops<float>(), ops<double>()};
  return table;
}

}  // namespace pyrnn::PYRNN_ISA
