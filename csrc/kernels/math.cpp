// Vectorised exp, sigmoid and tanh over arrays (the per-register code is in vec/vec_math.h).
//
// Maximum errors, measured by tests/test_math_accuracy.py on every instruction set against a
// higher-precision reference (float64 for float32, long double for float64):
//
//   float32   exp, sigmoid   relative error <= 4e-6  (measured: 8.2e-8 exp, 2.3e-7 sigmoid)
//             tanh           absolute error <= 5e-6  (measured: 3.4e-7), and relative
//                            error <= 4e-6 for |x| < 0.625 (measured: 2.4e-7), so tiny x keeps
//                            full precision
//   float64   exp, sigmoid   relative error <= 1e-14 (measured: 3.8e-16 exp, 4.3e-16 sigmoid)
//             tanh           absolute error <= 1e-14 (measured: 1.8e-16)
//
// The relative bounds hold wherever the true result is a normal number; results below the
// smallest normal (exp(x) for x < -87.3 in float32, sigmoid(x) for x < -87.3) may be flushed
// to zero, as they are anyway when the cells run with flush-to-zero. Special values are exact:
// exp overflows to +inf and underflows to 0, exp(+-inf) = inf, 0; sigmoid(-inf) = 0,
// sigmoid(+inf) = 1; tanh(+-inf) = +-1, tanh(+-0) = +-0; NaN in gives NaN out.
#include "kernels/math.h"

#include "vec/vec_math.h"

namespace pyrnn::PYRNN_ISA {
namespace {

// y[i] = f(x[i]) for one Vec at a time; the tail uses partial loads and stores.
template <typename T, typename F>
void apply(index n, const T* x, T* y, F f) {
  using V = Vec<T>;
  index i = 0;
  for (; i + V::width <= n; i += V::width) f(V::loadu(x + i)).storeu(y + i);
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    f(V::load_partial(x + i, rest)).store_partial(y + i, rest);
  }
}

}  // namespace

template <typename T>
void vexp(index n, const T* x, T* y) {
  apply(n, x, y, [](Vec<T> v) { return exp_v(v); });
}

template <typename T>
void vsigmoid(index n, const T* x, T* y) {
  apply(n, x, y, [](Vec<T> v) { return sigmoid_v(v); });
}

template <typename T>
void vtanh(index n, const T* x, T* y) {
  apply(n, x, y, [](Vec<T> v) { return tanh_v(v); });
}

template void vexp<float>(index, const float*, float*);
template void vexp<double>(index, const double*, double*);
template void vsigmoid<float>(index, const float*, float*);
template void vsigmoid<double>(index, const double*, double*);
template void vtanh<float>(index, const float*, float*);
template void vtanh<double>(index, const double*, double*);

}  // namespace pyrnn::PYRNN_ISA
