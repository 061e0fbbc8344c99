// Bindings of the xLSTM kernels (csrc/xlstm_api.h): checks every array (dtype, contiguity,
// shape), allocates outputs, releases the GIL and calls the kernel table. The Python layer
// (pyrnn/xlstm.py) validates user input with friendlier messages first; these checks are the
// last line of defence, so a bad call can never crash the process.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "array_checks.h"
#include "native_call.h"
#include "pyrnn.h"
#include "training_cache.h"
#include "xlstm_api.h"

namespace py = pybind11;
using namespace pyrnn;
using namespace pyrnn::bind;

namespace {

void check_heads(pyrnn::index H, pyrnn::index NH) {
  if (NH < 1) throw py::value_error("num_heads must be >= 1, got " + std::to_string(NH));
  if (H < 1 || H % NH != 0)
    throw py::value_error("hidden size " + std::to_string(H) + " must be a positive multiple of num_heads = " +
                          std::to_string(NH));
}

const py::array& as_array(const py::object& x, const char* what) {
  if (!py::isinstance<py::array>(x)) throw py::type_error(std::string(what) + " must be a numpy array");
  return reinterpret_cast<const py::array&>(x);
}

using SlstmCache = TrainingCache<SlstmDims>;
using MlstmCache = TrainingCache<MlstmDims>;

// ---- sLSTM ----

template <typename T>
py::tuple slstm_forward_impl(const py::array& x_obj, const py::object& h0_o, const py::object& c0_o,
                             const py::object& n0_o, const py::object& m0_o, const py::object& w_ih_o,
                             const py::object& w_hh_o, const py::object& bias_o, pyrnn::index NH,
                             bool forget_exp, bool headwise, const py::object& lengths_o, bool training) {
  if (x_obj.ndim() != 3) throw py::value_error("x: expected shape (T, B, I), got ndim " + std::to_string(x_obj.ndim()));
  const auto& w_ih_arr = as_array(w_ih_o, "w_ih");
  if (w_ih_arr.ndim() != 2 || w_ih_arr.shape(0) % 4 != 0)
    throw py::value_error(headwise ? "w_ih must be a 2-D array (4H, I/num_heads)" : "w_ih must be a 2-D array (4H, I)");
  SlstmDims d{x_obj.shape(0), x_obj.shape(1), x_obj.shape(2), w_ih_arr.shape(0) / 4, NH, !bias_o.is_none(),
              forget_exp, headwise};
  check_heads(d.H, NH);
  if (headwise && d.I % NH != 0)
    throw py::value_error("a headwise input projection needs the input size " + std::to_string(d.I) +
                          " to be a multiple of num_heads = " + std::to_string(NH));
  const pyrnn::index DH = d.H / NH;
  auto x = checked<T>(x_obj, "x", {d.T, d.B, d.I});
  auto h0 = checked<T>(h0_o, "h0", {d.B, d.H});
  auto c0 = checked<T>(c0_o, "c0", {d.B, d.H});
  auto n0 = checked<T>(n0_o, "n0", {d.B, d.H});
  auto m0 = checked<T>(m0_o, "m0", {d.B, d.H});
  auto w_ih = checked<T>(w_ih_o, "w_ih", {4 * d.H, d.in_cols()});
  auto w_hh = checked<T>(w_hh_o, "w_hh", {4 * d.H, DH});
  auto bias = optional_checked<T>(bias_o, "bias", {4 * d.H});
  auto lengths = checked_lengths(lengths_o, d.T, d.B);
  const auto& kt = active_kernels();
  py::array_t<T> y({d.T, d.B, d.H}), h_n({d.B, d.H}), c_n({d.B, d.H}), n_n({d.B, d.H}), m_n({d.B, d.H});
  std::optional<py::array_t<T>> ws;
  if (training) ws = workspace_array<T>(kt.slstm_workspace_size(d));
  SlstmForwardArgs<T> a{x.data(), h0.data(), c0.data(), n0.data(), m0.data(), w_ih.data(), w_hh.data(),
                        in_ptr(bias), lengths ? lengths->data() : nullptr, y.mutable_data(),
                        h_n.mutable_data(), c_n.mutable_data(), n_n.mutable_data(), m_n.mutable_data(),
                        ws ? ws->mutable_data() : nullptr};
  run_native([&] {
    if constexpr (std::is_same_v<T, float>) kt.slstm_forward_f32(d, a);
    else kt.slstm_forward_f64(d, a);
  });
  py::object cache = py::none();
  if (training) cache = py::cast(SlstmCache{d, x, lengths ? py::object(*lengths) : py::none(), *ws});
  return py::make_tuple(y, h_n, c_n, n_n, m_n, cache);
}

py::tuple slstm_forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& n0,
                        const py::object& m0, const py::object& w_ih, const py::object& w_hh,
                        const py::object& bias, pyrnn::index num_heads, bool forget_exp, bool headwise,
                        const py::object& lengths, bool training) {
  const auto& xa = as_array(x, "x");
  if (is_float32(xa, "x"))
    return slstm_forward_impl<float>(xa, h0, c0, n0, m0, w_ih, w_hh, bias, num_heads, forget_exp, headwise, lengths, training);
  return slstm_forward_impl<double>(xa, h0, c0, n0, m0, w_ih, w_hh, bias, num_heads, forget_exp, headwise, lengths, training);
}

template <typename T>
py::tuple slstm_backward_impl(const SlstmCache& cache, const py::object& dy_o, const py::object& dh_o,
                              const py::object& dc_o, const py::object& dn_o, const py::object& dm_o,
                              const py::object& w_ih_o, const py::object& w_hh_o, const py::object& dw_ih_o,
                              const py::object& dw_hh_o, const py::object& db_o) {
  const SlstmDims& d = cache.dims;
  const pyrnn::index DH = d.H / d.NH;
  const auto& kt = active_kernels();
  auto x = checked<T>(cache.x, "cache.x", {d.T, d.B, d.I});
  auto ws = checked<T>(cache.workspace, "cache.workspace", {kt.slstm_workspace_size(d)});
  auto w_ih = checked<T>(w_ih_o, "w_ih", {4 * d.H, d.in_cols()});
  auto w_hh = checked<T>(w_hh_o, "w_hh", {4 * d.H, DH});
  auto dy = optional_checked<T>(dy_o, "dy", {d.T, d.B, d.H});
  auto dh = optional_checked<T>(dh_o, "dh_n", {d.B, d.H});
  auto dc = optional_checked<T>(dc_o, "dc_n", {d.B, d.H});
  auto dn = optional_checked<T>(dn_o, "dn_n", {d.B, d.H});
  auto dm = optional_checked<T>(dm_o, "dm_n", {d.B, d.H});
  auto dw_ih = grad_checked<T>(dw_ih_o, "dw_ih", {4 * d.H, d.in_cols()});
  auto dw_hh = grad_checked<T>(dw_hh_o, "dw_hh", {4 * d.H, DH});
  if (!dw_ih || !dw_hh) throw py::value_error("dw_ih and dw_hh are required");
  auto db = grad_checked<T>(db_o, "db", {4 * d.H});
  if (d.has_bias != db.has_value()) throw py::value_error("db must be given exactly when the layer has a bias");
  std::optional<py::array_t<std::int64_t>> lengths;
  if (!cache.lengths.is_none()) lengths = checked<std::int64_t>(cache.lengths, "cache.lengths", {d.B});
  py::array_t<T> dx({d.T, d.B, d.I}), dh0({d.B, d.H}), dc0({d.B, d.H}), dn0({d.B, d.H}), dm0({d.B, d.H});
  SlstmBackwardArgs<T> a{x.data(), w_ih.data(), w_hh.data(), lengths ? lengths->data() : nullptr, ws.data(),
                         in_ptr(dy), in_ptr(dh), in_ptr(dc), in_ptr(dn), in_ptr(dm), dx.mutable_data(), dh0.mutable_data(),
                         dc0.mutable_data(), dn0.mutable_data(), dm0.mutable_data(), dw_ih->mutable_data(),
                         dw_hh->mutable_data(), db ? db->mutable_data() : nullptr};
  run_native([&] {
    if constexpr (std::is_same_v<T, float>) kt.slstm_backward_f32(d, a);
    else kt.slstm_backward_f64(d, a);
  });
  return py::make_tuple(dx, dh0, dc0, dn0, dm0);
}

py::tuple slstm_backward(const py::object& cache_o, const py::object& dy, const py::object& dh_n,
                         const py::object& dc_n, const py::object& dn_n, const py::object& dm_n,
                         const py::object& w_ih, const py::object& w_hh, const py::object& dw_ih,
                         const py::object& dw_hh, const py::object& db) {
  const auto& cache = cast_training_cache<SlstmDims>(cache_o, "SlstmCache", "slstm_forward");
  if (is_float32(cache.x, "cache.x")) return slstm_backward_impl<float>(cache, dy, dh_n, dc_n, dn_n, dm_n, w_ih, w_hh, dw_ih, dw_hh, db);
  return slstm_backward_impl<double>(cache, dy, dh_n, dc_n, dn_n, dm_n, w_ih, w_hh, dw_ih, dw_hh, db);
}

// ---- mLSTM ----

template <typename T>
py::tuple mlstm_forward_impl(const py::array& x_obj, const py::object& c0_o, const py::object& n0_o,
                             const py::object& m0_o, const py::object& w_ih_o, const py::object& bias_o,
                             pyrnn::index NH, double eps, bool output_gate, const py::object& lengths_o,
                             bool training) {
  if (x_obj.ndim() != 3) throw py::value_error("x: expected shape (T, B, I), got ndim " + std::to_string(x_obj.ndim()));
  if (NH < 1) throw py::value_error("num_heads must be >= 1");
  const auto& w_ih_arr = as_array(w_ih_o, "w_ih");
  const pyrnn::index per = output_gate ? 4 : 3;
  if (w_ih_arr.ndim() != 2 || w_ih_arr.shape(0) <= 2 * NH || (w_ih_arr.shape(0) - 2 * NH) % per != 0)
    throw py::value_error("w_ih must be a 2-D array (" + std::string(output_gate ? "4H" : "3H") + " + 2*num_heads, I)");
  if (!(eps >= 0)) throw py::value_error("eps must be >= 0");
  MlstmDims d{x_obj.shape(0), x_obj.shape(1), x_obj.shape(2), (w_ih_arr.shape(0) - 2 * NH) / per, NH,
              !bias_o.is_none(), output_gate, eps};
  check_heads(d.H, NH);
  const pyrnn::index DH = d.H / NH;
  auto x = checked<T>(x_obj, "x", {d.T, d.B, d.I});
  auto c0 = checked<T>(c0_o, "c0", {d.B, NH, DH, DH});
  auto n0 = checked<T>(n0_o, "n0", {d.B, NH, DH});
  auto m0 = checked<T>(m0_o, "m0", {d.B, NH});
  auto w_ih = checked<T>(w_ih_o, "w_ih", {d.rows(), d.I});
  auto bias = optional_checked<T>(bias_o, "bias", {d.rows()});
  auto lengths = checked_lengths(lengths_o, d.T, d.B);
  const auto& kt = active_kernels();
  py::array_t<T> y({d.T, d.B, d.H}), c_n({d.B, NH, DH, DH}), n_n({d.B, NH, DH}), m_n({d.B, NH});
  std::optional<py::array_t<T>> ws;
  if (training) ws = workspace_array<T>(kt.mlstm_workspace_size(d));
  MlstmForwardArgs<T> a{x.data(), c0.data(), n0.data(), m0.data(), w_ih.data(), in_ptr(bias),
                        lengths ? lengths->data() : nullptr, y.mutable_data(), c_n.mutable_data(),
                        n_n.mutable_data(), m_n.mutable_data(), ws ? ws->mutable_data() : nullptr};
  run_native([&] {
    if constexpr (std::is_same_v<T, float>) kt.mlstm_forward_f32(d, a);
    else kt.mlstm_forward_f64(d, a);
  });
  py::object cache = py::none();
  if (training) cache = py::cast(MlstmCache{d, x, lengths ? py::object(*lengths) : py::none(), *ws});
  return py::make_tuple(y, c_n, n_n, m_n, cache);
}

py::tuple mlstm_forward(const py::object& x, const py::object& c0, const py::object& n0, const py::object& m0,
                        const py::object& w_ih, const py::object& bias, pyrnn::index num_heads, double eps,
                        bool output_gate, const py::object& lengths, bool training) {
  const auto& xa = as_array(x, "x");
  if (is_float32(xa, "x")) return mlstm_forward_impl<float>(xa, c0, n0, m0, w_ih, bias, num_heads, eps, output_gate, lengths, training);
  return mlstm_forward_impl<double>(xa, c0, n0, m0, w_ih, bias, num_heads, eps, output_gate, lengths, training);
}

template <typename T>
py::tuple mlstm_backward_impl(const MlstmCache& cache, const py::object& dy_o, const py::object& dc_o,
                              const py::object& dn_o, const py::object& dm_o, const py::object& w_ih_o,
                              const py::object& dw_ih_o, const py::object& db_o) {
  const MlstmDims& d = cache.dims;
  const pyrnn::index NH = d.NH, DH = d.H / NH;
  const auto& kt = active_kernels();
  auto x = checked<T>(cache.x, "cache.x", {d.T, d.B, d.I});
  auto ws = checked<T>(cache.workspace, "cache.workspace", {kt.mlstm_workspace_size(d)});
  auto w_ih = checked<T>(w_ih_o, "w_ih", {d.rows(), d.I});
  auto dy = optional_checked<T>(dy_o, "dy", {d.T, d.B, d.H});
  auto dc = optional_checked<T>(dc_o, "dc_n", {d.B, NH, DH, DH});
  auto dn = optional_checked<T>(dn_o, "dn_n", {d.B, NH, DH});
  auto dm = optional_checked<T>(dm_o, "dm_n", {d.B, NH});
  auto dw_ih = grad_checked<T>(dw_ih_o, "dw_ih", {d.rows(), d.I});
  if (!dw_ih) throw py::value_error("dw_ih is required");
  auto db = grad_checked<T>(db_o, "db", {d.rows()});
  if (d.has_bias != db.has_value()) throw py::value_error("db must be given exactly when the layer has a bias");
  std::optional<py::array_t<std::int64_t>> lengths;
  if (!cache.lengths.is_none()) lengths = checked<std::int64_t>(cache.lengths, "cache.lengths", {d.B});
  py::array_t<T> dx({d.T, d.B, d.I}), dc0({d.B, NH, DH, DH}), dn0({d.B, NH, DH}), dm0({d.B, NH});
  MlstmBackwardArgs<T> a{x.data(), w_ih.data(), lengths ? lengths->data() : nullptr, ws.data(), in_ptr(dy),
                         in_ptr(dc), in_ptr(dn), in_ptr(dm), dx.mutable_data(), dc0.mutable_data(), dn0.mutable_data(),
                         dm0.mutable_data(), dw_ih->mutable_data(), db ? db->mutable_data() : nullptr};
  run_native([&] {
    if constexpr (std::is_same_v<T, float>) kt.mlstm_backward_f32(d, a);
    else kt.mlstm_backward_f64(d, a);
  });
  return py::make_tuple(dx, dc0, dn0, dm0);
}

py::tuple mlstm_backward(const py::object& cache_o, const py::object& dy, const py::object& dc_n,
                         const py::object& dn_n, const py::object& dm_n, const py::object& w_ih,
                         const py::object& dw_ih, const py::object& db) {
  const auto& cache = cast_training_cache<MlstmDims>(cache_o, "MlstmCache", "mlstm_forward");
  if (is_float32(cache.x, "cache.x")) return mlstm_backward_impl<float>(cache, dy, dc_n, dn_n, dm_n, w_ih, dw_ih, db);
  return mlstm_backward_impl<double>(cache, dy, dc_n, dn_n, dm_n, w_ih, dw_ih, db);
}

}  // namespace

void bind_xlstm(py::module_& m) {
  bind_training_cache<SlstmDims>(m, "SlstmCache", "slstm_forward");
  bind_training_cache<MlstmDims>(m, "MlstmCache", "mlstm_forward");
  m.def("slstm_forward", &slstm_forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("n0"),
        py::arg("m0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("bias"), py::arg("num_heads"),
        py::arg("forget_exp"), py::arg("headwise"), py::arg("lengths"), py::arg("training"),
        "One sLSTM layer over the sequence; headwise: w_ih (4H, I/num_heads) block-diagonal over heads. "
        "Returns (y, h_n, c_n, n_n, m_n, cache or None).");
  m.def("slstm_backward", &slstm_backward, py::arg("cache"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
        py::arg("dn_n"), py::arg("dm_n"), py::arg("w_ih"), py::arg("w_hh"), py::arg("dw_ih"),
        py::arg("dw_hh"), py::arg("db"),
        "BPTT through the forward that made `cache`; accumulates weight gradients in place. "
        "Returns (dx, dh0, dc0, dn0, dm0).");
  m.def("mlstm_forward", &mlstm_forward, py::arg("x"), py::arg("c0"), py::arg("n0"), py::arg("m0"),
        py::arg("w_ih"), py::arg("bias"), py::arg("num_heads"), py::arg("eps"), py::arg("output_gate"),
        py::arg("lengths"), py::arg("training"),
        "One mLSTM layer over the sequence. Returns (y, c_n, n_n, m_n, cache or None).");
  m.def("mlstm_backward", &mlstm_backward, py::arg("cache"), py::arg("dy"), py::arg("dc_n"), py::arg("dn_n"),
        py::arg("dm_n"), py::arg("w_ih"), py::arg("dw_ih"), py::arg("db"),
        "BPTT through the forward that made `cache`; accumulates weight gradients in place. "
        "Returns (dx, dc0, dn0, dm0).");
}
