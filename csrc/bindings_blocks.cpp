// Bindings of the building blocks' kernels (csrc/blocks_api.h) as the submodule
// pyrnn._core.blocks, the native side of pyrnn/_dense.py (pyrnn/reference_blocks.py has the
// same functions in NumPy). Every array is checked (dtype float32/float64 alike across the
// arguments, C-contiguous, shapes, writable outputs, index ranges) before the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "array_checks.h"
#include "blocks_api.h"

namespace py = pybind11;
using namespace pyrnn;
using namespace pyrnn::bind;

namespace {

// The building blocks of the instruction set in use (KernelTable's, switched with it). The
// dot-product ISAs (avx512_vnni, avx_vnni) add only integer products: their float building
// blocks are their family's.
const BlocksTable& blocks() {
  const char* isa = active_isa();
#if defined(PYRNN_HAVE_AVX512)
  if (std::strcmp(isa, "avx512") == 0 || std::strcmp(isa, "avx512_vnni") == 0) return avx512::blocks_table();
#endif
#if defined(PYRNN_HAVE_AVX2)
  if (std::strcmp(isa, "avx2") == 0 || std::strcmp(isa, "avx_vnni") == 0) return avx2::blocks_table();
#endif
  return baseline::blocks_table();
}

template <typename T>
const BlockOps<T>& ops() {
  if constexpr (std::is_same_v<T, float>) return blocks().f32;
  else return blocks().f64;
}

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) with T the floating dtype of `arr` (float32 or float64).
template <typename F>
auto with_dtype(const py::handle& obj, const char* name, F&& f) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
  const int num = py::reinterpret_borrow<py::array>(obj).dtype().num();
  if (num == py::dtype::num_of<float>()) return f(Tag<float>{});
  if (num == py::dtype::num_of<double>()) return f(Tag<double>{});
  throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " +
                       std::string(py::str(py::reinterpret_borrow<py::array>(obj).dtype())));
}

// `obj` as a C-contiguous array of dtype T of any shape.
template <typename T>
py::array_t<T> any_shape(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.dtype().num() != py::dtype::num_of<T>())
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  return py::reinterpret_borrow<py::array_t<T>>(arr);
}

template <typename T>
py::array_t<T> writable(py::array_t<T> a, const char* name) {
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  return a;
}

template <typename T>
void same_shape(const py::array_t<T>& a, const py::array_t<T>& ref, const char* name, const char* like) {
  bool ok = a.ndim() == ref.ndim();
  for (py::ssize_t k = 0; ok && k < a.ndim(); ++k) ok = a.shape(k) == ref.shape(k);
  if (!ok) throw py::value_error(std::string(name) + ": expected shape " + shape_of(ref) + " like " + like +
                                 ", got " + shape_of(a));
}

template <typename T>
py::array_t<T> empty_like(const py::array_t<T>& a) {
  return py::array_t<T>(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

Activation parse_activation(const std::string& name) {
  if (name == "identity") return Activation::Identity;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "relu") return Activation::Relu;
  if (name == "leaky_relu") return Activation::LeakyRelu;
  throw py::value_error("activation must be identity, tanh, sigmoid, relu or leaky_relu; got '" + name + "'");
}

// (rows, last axis) of an array seen as a matrix of rows along its last axis.
std::pair<pyrnn::index, pyrnn::index> rows_of(const py::array& a, const char* name) {
  if (a.ndim() < 1) throw py::value_error(std::string(name) + " must have at least one axis");
  const pyrnn::index n = a.shape(a.ndim() - 1);
  return {n == 0 ? 0 : a.size() / n, n};
}

// ---------------------------------------------------------------------------------------------

py::array gemm(const py::array& a_obj, const py::array& b_obj, bool trans_a, bool trans_b,
               const py::object& out_obj, double beta) {
  return with_dtype(a_obj, "a", [&](auto tag) -> py::array {
    using T = typename decltype(tag)::type;
    auto a = any_shape<T>(a_obj, "a");
    auto b = any_shape<T>(b_obj, "b");
    const bool batched = a.ndim() == 3;
    if (!(a.ndim() == 2 || batched) || !(b.ndim() == 2 || (batched && b.ndim() == 3)))
      throw py::value_error("gemm: a and b must be 2-D, or a 3-D (S, ., .) with b 3-D of the same S or 2-D; got " +
                            shape_of(a) + " and " + shape_of(b));
    const pyrnn::index S = batched ? a.shape(0) : 1;
    if (b.ndim() == 3 && b.shape(0) != S)
      throw py::value_error("gemm: a and b hold different numbers of products: " + shape_of(a) + " and " + shape_of(b));
    const int ra = batched ? 1 : 0, rb = b.ndim() == 3 ? 1 : 0;
    const pyrnn::index M = a.shape(ra + (trans_a ? 1 : 0)), K = a.shape(ra + (trans_a ? 0 : 1));
    const pyrnn::index KB = b.shape(rb + (trans_b ? 1 : 0)), N = b.shape(rb + (trans_b ? 0 : 1));
    if (K != KB)
      throw py::value_error("gemm: inner dimensions differ (" + std::to_string(K) + " vs " + std::to_string(KB) +
                            ") for a " + shape_of(a) + " and b " + shape_of(b));
    py::array_t<T> out;
    if (out_obj.is_none()) {
      if (beta != 0) throw py::value_error("gemm: beta != 0 needs out");
      out = batched ? py::array_t<T>({S, M, N}) : py::array_t<T>({M, N});
    } else {
      out = batched ? checked<T>(out_obj, "out", {S, M, N}) : checked<T>(out_obj, "out", {M, N});
      writable(out, "out");
    }
    const T* pa = a.data();
    const T* pb = b.data();
    T* pc = out.mutable_data();
    {
      py::gil_scoped_release release;
      ops<T>().batched_gemm(S, trans_a, trans_b, M, N, K, pa, a.shape(ra + 1), M * K, pb, b.shape(rb + 1),
                            rb ? K * N : 0, T(beta), pc, N, M * N);
    }
    return out;
  });
}

py::array linear(const py::array& x_obj, const py::array& w_obj, const py::object& bias_obj) {
  return with_dtype(x_obj, "x", [&](auto tag) -> py::array {
    using T = typename decltype(tag)::type;
    auto x = any_shape<T>(x_obj, "x");
    if (x.ndim() != 2) throw py::value_error("x: expected shape (M, K), got " + shape_of(x));
    const pyrnn::index M = x.shape(0), K = x.shape(1);
    if (!py::isinstance<py::array>(w_obj) || w_obj.ndim() != 2)
      throw py::value_error("weight: expected a 2-D array (N, " + std::to_string(K) + ")");
    const pyrnn::index N = w_obj.shape(0);
    auto w = checked<T>(w_obj, "weight", {N, K});
    auto bias = optional_checked<T>(bias_obj, "bias", {N});
    py::array_t<T> y({M, N});
    const T* px = x.data();
    const T* pw = w.data();
    const T* pb = in_ptr(bias);
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      ops<T>().linear(M, N, K, px, pw, pb, py_);
    }
    return y;
  });
}

void column_sums(const py::array& x_obj, const py::array& out_obj) {
  with_dtype(x_obj, "x", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto x = any_shape<T>(x_obj, "x");
    if (x.ndim() != 2) throw py::value_error("x: expected shape (M, N), got " + shape_of(x));
    auto out = writable(checked<T>(out_obj, "out", {x.shape(1)}), "out");
    const T* px = x.data();
    T* po = out.mutable_data();
    py::gil_scoped_release release;
    ops<T>().column_sums(x.shape(0), x.shape(1), px, po);
  });
}

py::array activation(const std::string& kind, const py::array& x_obj, double slope) {
  const Activation f = parse_activation(kind);
  return with_dtype(x_obj, "x", [&](auto tag) -> py::array {
    using T = typename decltype(tag)::type;
    auto x = any_shape<T>(x_obj, "x");
    auto y = empty_like(x);
    const T* px = x.data();
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      ops<T>().activation_forward(f, T(slope), x.size(), px, py_);
    }
    return y;
  });
}

py::array activation_backward(const std::string& kind, const py::array& x_obj, const py::array& y_obj,
                              const py::array& dy_obj, double slope) {
  const Activation f = parse_activation(kind);
  return with_dtype(x_obj, "x", [&](auto tag) -> py::array {
    using T = typename decltype(tag)::type;
    auto x = any_shape<T>(x_obj, "x");
    auto y = any_shape<T>(y_obj, "y");
    auto dy = any_shape<T>(dy_obj, "dy");
    same_shape(y, x, "y", "x");
    same_shape(dy, x, "dy", "x");
    auto dx = empty_like(x);
    const T *px = x.data(), *pyv = y.data(), *pdy = dy.data();
    T* pdx = dx.mutable_data();
    {
      py::gil_scoped_release release;
      ops<T>().activation_backward(f, T(slope), x.size(), px, pyv, pdy, pdx);
    }
    return dx;
  });
}

py::array softmax(const py::array& x_obj, bool log) {
  return with_dtype(x_obj, "x", [&](auto tag) -> py::array {
    using T = typename decltype(tag)::type;
    auto x = any_shape<T>(x_obj, "x");
    const auto [M, N] = rows_of(x, "x");
    auto y = empty_like(x);
    const T* px = x.data();
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      ops<T>().softmax(log, M, N, px, py_);
    }
    return y;
  });
}

py::array softmax_backward(const py::array& y_obj, const py::array& dy_obj) {
  return with_dtype(y_obj, "y", [&](auto tag) -> py::array {
    using T = typename decltype(tag)::type;
    auto y = any_shape<T>(y_obj, "y");
    auto dy = any_shape<T>(dy_obj, "dy");
    same_shape(dy, y, "dy", "y");
    const auto [M, N] = rows_of(y, "y");
    auto dx = empty_like(y);
    const T *pyv = y.data(), *pdy = dy.data();
    T* pdx = dx.mutable_data();
    {
      py::gil_scoped_release release;
      ops<T>().softmax_backward(M, N, pyv, pdy, pdx);
    }
    return dx;
  });
}

py::tuple cross_entropy(const py::array& logits_obj, const py::array& targets_obj, const py::array& scale_obj,
                        double label_smoothing) {
  if (!(label_smoothing >= 0 && label_smoothing < 1))
    throw py::value_error("label_smoothing must be in [0, 1), got " + std::to_string(label_smoothing));
  return with_dtype(logits_obj, "logits", [&](auto tag) -> py::tuple {
    using T = typename decltype(tag)::type;
    auto logits = any_shape<T>(logits_obj, "logits");
    if (logits.ndim() != 2 || logits.shape(1) < 1)
      throw py::value_error("logits: expected shape (M, N) with N >= 1 classes, got " + shape_of(logits));
    const pyrnn::index M = logits.shape(0), N = logits.shape(1);
    auto targets = checked<std::int64_t>(targets_obj, "targets", {M});
    auto scale = checked<T>(scale_obj, "scale", {M});
    const std::int64_t* pt = targets.data();
    for (pyrnn::index i = 0; i < M; ++i)
      if (pt[i] < 0 || pt[i] >= N)
        throw py::value_error("targets[" + std::to_string(i) + "] = " + std::to_string(pt[i]) +
                              " is outside 0.." + std::to_string(N - 1));
    py::array_t<double> loss(M);
    auto dlogits = empty_like(logits);
    const T *pl = logits.data(), *ps = scale.data();
    double* ploss = loss.mutable_data();
    T* pd = dlogits.mutable_data();
    {
      py::gil_scoped_release release;
      ops<T>().cross_entropy(M, N, pl, pt, ps, T(label_smoothing), ploss, pd);
    }
    return py::make_tuple(loss, dlogits);
  });
}

void adam_update(const py::array& p_obj, const py::array& g_obj, const py::array& m_obj, const py::array& v_obj,
                 double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
                 std::int64_t step) {
  if (step < 1) throw py::value_error("step must be >= 1, got " + std::to_string(step));
  with_dtype(p_obj, "p", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto p = writable(any_shape<T>(p_obj, "p"), "p");
    auto g = any_shape<T>(g_obj, "g");
    auto m = writable(any_shape<T>(m_obj, "m"), "m");
    auto v = writable(any_shape<T>(v_obj, "v"), "v");
    same_shape(g, p, "g", "p");
    same_shape(m, p, "m", "p");
    same_shape(v, p, "v", "p");
    T* pp = p.mutable_data();
    const T* pg = g.data();
    T *pm = m.mutable_data(), *pv = v.mutable_data();
    py::gil_scoped_release release;
    ops<T>().adam(p.size(), pp, pg, pm, pv, lr, beta1, beta2, eps, weight_decay, decoupled, step);
  });
}

void sgd_update(const py::array& p_obj, const py::array& g_obj, const py::object& buf_obj, double lr,
                double momentum, double dampening, double weight_decay, bool nesterov, bool first) {
  with_dtype(p_obj, "p", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto p = writable(any_shape<T>(p_obj, "p"), "p");
    auto g = any_shape<T>(g_obj, "g");
    same_shape(g, p, "g", "p");
    std::optional<py::array_t<T>> buf;
    if (!buf_obj.is_none()) {
      buf = writable(any_shape<T>(buf_obj, "buf"), "buf");
      same_shape(*buf, p, "buf", "p");
    }
    T* pp = p.mutable_data();
    const T* pg = g.data();
    T* pb = out_ptr(buf);
    py::gil_scoped_release release;
    ops<T>().sgd(p.size(), pp, pg, pb, lr, momentum, dampening, weight_decay, nesterov, first);
  });
}

void embedding_backward(const py::array& ids_obj, const py::array& dout_obj, std::int64_t skip,
                        const py::array& dweight_obj) {
  with_dtype(dout_obj, "dout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto dout = any_shape<T>(dout_obj, "dout");
    if (dout.ndim() != 2) throw py::value_error("dout: expected shape (M, N), got " + shape_of(dout));
    const pyrnn::index M = dout.shape(0), N = dout.shape(1);
    auto ids = checked<std::int64_t>(ids_obj, "ids", {M});
    auto dweight = writable(any_shape<T>(dweight_obj, "dweight"), "dweight");
    if (dweight.ndim() != 2 || dweight.shape(1) != N)
      throw py::value_error("dweight: expected shape (rows, " + std::to_string(N) + "), got " + shape_of(dweight));
    const pyrnn::index rows = dweight.shape(0);
    const std::int64_t* pi = ids.data();
    for (pyrnn::index i = 0; i < M; ++i)
      if (pi[i] != skip && (pi[i] < 0 || pi[i] >= rows))
        throw py::value_error("ids[" + std::to_string(i) + "] = " + std::to_string(pi[i]) + " is outside 0.." +
                              std::to_string(rows - 1));
    const T* pd = dout.data();
    T* pw = dweight.mutable_data();
    py::gil_scoped_release release;
    ops<T>().embedding_backward(M, N, pi, pd, skip, pw);
  });
}

double sum_squares(const py::array& x_obj) {
  return with_dtype(x_obj, "x", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto x = any_shape<T>(x_obj, "x");
    const T* px = x.data();
    const pyrnn::index n = x.size();
    py::gil_scoped_release release;
    return ops<T>().sum_squares(n, px);
  });
}

}  // namespace

void bind_blocks(py::module_& parent) {
  py::module_ m = parent.def_submodule(
      "blocks", "Native kernels of the building blocks (pyrnn/_dense.py; NumPy twins in pyrnn.reference_blocks)");
  m.def("isa", [] { return std::string(blocks().name); },
        "the instruction set whose building-block kernels run (the active ISA's float family)");
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        py::arg("out") = py::none(), py::arg("beta") = 0.0,
        "out = beta*out + op(a) @ op(b) (2-D, or a batch of products along a 3-D a's first axis)");
  m.def("linear", &linear, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        "x (M, K) @ weight (N, K).T + bias (N,)");
  m.def("column_sums", &column_sums, py::arg("x"), py::arg("out"), "out (N,) += x (M, N).sum(axis=0)");
  m.def("activation", &activation, py::arg("kind"), py::arg("x"), py::arg("slope") = 0.0);
  m.def("activation_backward", &activation_backward, py::arg("kind"), py::arg("x"), py::arg("y"), py::arg("dy"),
        py::arg("slope") = 0.0);
  m.def("softmax", &softmax, py::arg("x"), py::arg("log") = false, "softmax (or log-softmax) over the last axis");
  m.def("softmax_backward", &softmax_backward, py::arg("y"), py::arg("dy"));
  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("targets"), py::arg("scale"),
        py::arg("label_smoothing") = 0.0, "(loss per row (M,) float64, dlogits (M, N) scaled per row)");
  m.def("adam_update", &adam_update, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("lr"),
        py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
        py::arg("step"));
  m.def("sgd_update", &sgd_update, py::arg("p"), py::arg("g"), py::arg("buf"), py::arg("lr"), py::arg("momentum"),
        py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("first"));
  m.def("embedding_backward", &embedding_backward, py::arg("ids"), py::arg("dout"), py::arg("skip"),
        py::arg("dweight"), "dweight[ids[i]] += dout[i] in order, skipping ids equal to skip");
  m.def("sum_squares", &sum_squares, py::arg("x"), "sum of x**2 in float64");
}
