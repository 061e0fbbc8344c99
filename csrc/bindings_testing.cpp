// Bindings of the building-block kernels (GEMM, vectorised math) so that tests and
// benchmarks can check them against NumPy on every instruction set.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <iterator>
#include <string>

#include "buffer_pool.h"
#include "native_call.h"
#include "pyrnn.h"

namespace py = pybind11;
using namespace pyrnn;
using pyrnn::bind::run_native;

namespace {

template <typename T>
py::array_t<T> gemm_impl(bool trans_a, bool trans_b, const py::array_t<T, 0>& A,
                         const py::array_t<T, 0>& B, T beta, py::object C_obj) {
  if (A.ndim() != 2 || B.ndim() != 2) throw py::value_error("gemm: A and B must be 2-D");
  if (!(A.flags() & py::array::c_style) || !(B.flags() & py::array::c_style))
    throw py::value_error("gemm: A and B must be C-contiguous");
  const pyrnn::index M = trans_a ? A.shape(1) : A.shape(0);
  const pyrnn::index K = trans_a ? A.shape(0) : A.shape(1);
  const pyrnn::index KB = trans_b ? B.shape(1) : B.shape(0);
  const pyrnn::index N = trans_b ? B.shape(0) : B.shape(1);
  if (K != KB) throw py::value_error("gemm: inner dimensions differ: " + std::to_string(K) + " vs " + std::to_string(KB));
  py::array_t<T> C({M, N});
  if (!C_obj.is_none()) {
    auto C_in = C_obj.cast<py::array_t<T, py::array::c_style | py::array::forcecast>>();
    if (C_in.ndim() != 2 || C_in.shape(0) != M || C_in.shape(1) != N)
      throw py::value_error("gemm: C has the wrong shape");
    std::copy(C_in.data(), C_in.data() + M * N, C.mutable_data());
  } else if (beta != T(0)) {
    throw py::value_error("gemm: beta != 0 needs C");
  }
  const T* a = A.data();
  const T* b = B.data();
  T* c = C.mutable_data();
  run_native([&] {
    const auto& kt = active_kernels();
    if constexpr (std::is_same_v<T, float>)
      kt.gemm_f32(trans_a, trans_b, M, N, K, a, A.shape(1), b, B.shape(1), beta, c, N);
    else
      kt.gemm_f64(trans_a, trans_b, M, N, K, a, A.shape(1), b, B.shape(1), beta, c, N);
  });
  return C;
}

MathFn parse_math(const std::string& name) {
  if (name == "exp") return MathFn::Exp;
  if (name == "sigmoid") return MathFn::Sigmoid;
  if (name == "tanh") return MathFn::Tanh;
  throw py::value_error("math function must be exp, sigmoid or tanh; got '" + name + "'");
}

template <typename T>
py::array_t<T> math_impl(const std::string& name, const py::array_t<T, py::array::c_style>& x) {
  const MathFn fn = parse_math(name);
  py::array_t<T> y(x.request().shape);
  const pyrnn::index n = x.size();
  const T* in = x.data();
  T* out = y.mutable_data();
  run_native([&] {
    const auto& kt = active_kernels();
    if constexpr (std::is_same_v<T, float>) kt.math_f32(fn, n, in, out);
    else kt.math_f64(fn, n, in, out);
  });
  return y;
}

// Python names of SplitKind, in its order.
constexpr const char* kSplitNames[] = {"gemm_rows", "gemm_columns", "gemm_grid", "loop_units", "loop_takeover",
                                       "loop_rows", "tasks", "xlstm_items", "elementwise"};
static_assert(std::size(kSplitNames) == static_cast<size_t>(SplitKind::Count));

ForcedSplit parse_split(const std::string& name) {
  if (name == "auto") return ForcedSplit::Auto;
  if (name == "units") return ForcedSplit::Units;
  if (name == "rows") return ForcedSplit::Rows;
  throw py::value_error("loop_split must be 'auto', 'units' or 'rows'; got '" + name + "'");
}

const char* split_name(ForcedSplit split) {
  return split == ForcedSplit::Units ? "units" : split == ForcedSplit::Rows ? "rows" : "auto";
}

}  // namespace

void bind_testing(py::module_& m) {
  m.def("_gemm_f32", &gemm_impl<float>, py::arg("trans_a"), py::arg("trans_b"), py::arg("A"),
        py::arg("B"), py::arg("beta") = 0.0f, py::arg("C") = py::none());
  m.def("_gemm_f64", &gemm_impl<double>, py::arg("trans_a"), py::arg("trans_b"), py::arg("A"),
        py::arg("B"), py::arg("beta") = 0.0, py::arg("C") = py::none());
  m.def("_math_f32", &math_impl<float>, py::arg("fn"), py::arg("x"));
  m.def("_math_f64", &math_impl<double>, py::arg("fn"), py::arg("x"));
  m.def("_set_input_chunk_bytes", &set_input_chunk_bytes, py::arg("bytes"));
  m.def("_thread_testing", [] {
    const ThreadTesting& t = thread_testing();
    return py::make_tuple(t.work_scale, split_name(t.loop_split), t.absent_thread);
  }, "(work_scale, loop_split, absent_thread) now in force.");
  m.def("_set_thread_testing", [](double work_scale, const std::string& loop_split, int absent_thread) {
    set_thread_testing({work_scale, parse_split(loop_split), absent_thread});
  }, py::arg("work_scale"), py::arg("loop_split") = "auto", py::arg("absent_thread") = -1,
     "Scales every threshold on the work a thread needs (1: production, 0: split any work), "
     "forces how time loops split ('auto', 'units' or 'rows'), and makes thread absent_thread "
     "(-1: none) take no item of a loop shared step by step, as if descheduled.");
  m.def("_split_counts", [] {
    py::dict out;
    for (int k = 0; k < static_cast<int>(SplitKind::Count); ++k)
      out[kSplitNames[k]] = split_count(static_cast<SplitKind>(k));
    return out;
  }, "How many times each way of splitting work among threads ran since the last reset.");
  m.def("_reset_split_counts", &reset_split_counts);
  m.def("_input_chunk_bytes", &input_chunk_bytes);
  m.def("_buffer_pool_stats", [] {
    const BufferPoolStats st = buffer_pool_stats();
    py::dict out;
    out["enabled"] = st.enabled;
    out["idle_blocks"] = st.idle_blocks;
    out["idle_bytes"] = st.idle_bytes;
    out["reused"] = st.reused;
    return out;
  }, "Whether the buffer pool keeps blocks, its idle blocks and bytes, and how many requests it served from them.");
  m.def("release_idle_buffers", &release_idle_buffers,
        "Frees the large buffers kept idle for reuse between calls.");
}
