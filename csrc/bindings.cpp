// The only place that touches Python objects for the layer kernels: checks every array
// (dtype, contiguity, shape), allocates outputs, releases the GIL and calls the kernel table.
// The Python layer (pyrnn/layers.py) validates user input with friendlier messages first;
// these checks are the last line of defence, so a bad call can never crash the process.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <omp.h>

#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "array_checks.h"
#include "native_call.h"
#include "packed_weights.h"
#include "pyrnn.h"
#include "training_cache.h"

namespace py = pybind11;
using namespace pyrnn;
using namespace pyrnn::bind;

void bind_testing(py::module_& m);  // bindings_testing.cpp
void bind_xlstm(py::module_& m);    // bindings_xlstm.cpp
void bind_blocks(py::module_& m);   // bindings_blocks.cpp
void bind_quant(py::module_& m);    // bindings_quant.cpp

namespace {

constexpr std::pair<const char*, Cell> kCellNames[] = {{"rnn_tanh", Cell::RnnTanh}, {"rnn_relu", Cell::RnnRelu},
                                                       {"lstm", Cell::Lstm}, {"gru", Cell::Gru},
                                                       {"gru_reset_before", Cell::GruResetBefore}};

const char* name_of(Cell cell) {
  for (const auto& [name, c] : kCellNames)
    if (c == cell) return name;
  return "?";
}

Cell parse_cell(const std::string& name) {
  for (const auto& [n, cell] : kCellNames)
    if (name == n) return cell;
  throw py::value_error("cell must be one of rnn_tanh, rnn_relu, lstm, gru, gru_reset_before; got '" +
                        name + "'");
}

// The dimensions of a layer call from x's (T, B, I) and the weights; checks that the
// optional weights come in consistent combinations.
LayerDims layer_dims(Cell cell, pyrnn::index T, pyrnn::index B, pyrnn::index I, const py::object& w_hh_obj,
                     const py::object& b_ih_obj, const py::object& b_hh_obj, const py::object& w_hr_obj) {
  const pyrnn::index G = gate_count(cell);
  if (!py::isinstance<py::array>(w_hh_obj) || py::reinterpret_borrow<py::array>(w_hh_obj).ndim() != 2)
    throw py::value_error("w_hh must be a 2-D array (G*H, P)");
  auto w_hh = py::reinterpret_borrow<py::array>(w_hh_obj);
  LayerDims d{};
  d.cell = cell;
  d.T = T;
  d.B = B;
  d.I = I;
  d.H = w_hh.shape(0) / G;
  d.P = w_hh.shape(1);
  d.has_bias = !b_ih_obj.is_none();
  d.has_proj = !w_hr_obj.is_none();
  if (d.has_proj && cell != Cell::Lstm) throw py::value_error("w_hr (projection) is LSTM only");
  if (!d.has_proj && d.P != d.H)
    throw py::value_error("w_hh: expected shape " + shape_str({G * d.H, d.H}) + ", got " + shape_of(w_hh));
  if (d.has_bias == b_hh_obj.is_none()) throw py::value_error("b_ih and b_hh must both be given or both be None");
  return d;
}

// The peephole weights (3*H) of an LSTM, or none: sets d.has_peep.
template <typename T>
std::optional<py::array_t<T>> checked_peepholes(const py::object& w_peep_obj, LayerDims& d) {
  d.has_peep = !w_peep_obj.is_none();
  if (d.has_peep && d.cell != Cell::Lstm) throw py::value_error("w_peep (peepholes) is LSTM only");
  return optional_checked<T>(w_peep_obj, "w_peep", {3 * d.H});
}

using LayerCache = TrainingCache<LayerDims>;

// Raised when packed weights meet kernels of another instruction set than made them (the
// active ISA was switched since): Python repacks and retries. A ValueError subclass.
struct StalePacking : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check_packing_isa(const PackedLayer& p) {
  if (std::strcmp(p.isa, active_isa()) != 0)
    throw StalePacking(std::string("packed weights were made for the ") + p.isa + " kernels, but " +
                       active_isa() + " is active now: pack them again");
}

template <typename T>
PackedWeights pack_impl(const std::string& cell_name, const py::array& w_ih_obj, const py::object& w_hh_obj,
                        const py::object& b_ih_obj, const py::object& b_hh_obj, const py::object& w_hr_obj,
                        const py::object& w_peep_obj) {
  const Cell cell = parse_cell(cell_name);
  if (w_ih_obj.ndim() != 2) throw py::value_error("w_ih: expected shape (G*H, I), got " + shape_of(w_ih_obj));
  LayerDims d = layer_dims(cell, 1, 1, w_ih_obj.shape(1), w_hh_obj, b_ih_obj, b_hh_obj, w_hr_obj);
  const pyrnn::index G = gate_count(cell);
  auto w_ih = checked<T>(w_ih_obj, "w_ih", {G * d.H, d.I});
  auto w_hh = checked<T>(w_hh_obj, "w_hh", {G * d.H, d.P});
  auto b_ih = optional_checked<T>(b_ih_obj, "b_ih", {G * d.H});
  auto b_hh = optional_checked<T>(b_hh_obj, "b_hh", {G * d.H});
  auto w_hr = optional_checked<T>(w_hr_obj, "w_hr", {d.P, d.H});
  auto w_peep = checked_peepholes<T>(w_peep_obj, d);
  LayerForwardArgs<T> a{};
  a.w_ih = w_ih.data();
  a.w_hh = w_hh.data();
  a.b_ih = in_ptr(b_ih);
  a.b_hh = in_ptr(b_hh);
  a.w_hr = in_ptr(w_hr);
  a.w_peep = in_ptr(w_peep);
  PackedWeights out{cell_name, nullptr};
  run_native([&] {
    const auto& kt = active_kernels();
    if constexpr (std::is_same_v<T, float>) out.layer.reset(kt.pack_layer_f32(d, a));
    else out.layer.reset(kt.pack_layer_f64(d, a));
  });
  return out;
}

PackedWeights pack_layer(const std::string& cell, const py::array& w_ih, const py::object& w_hh,
                         const py::object& b_ih, const py::object& b_hh, const py::object& w_hr,
                         const py::object& w_peep) {
  if (is_float32(w_ih, "w_ih")) return pack_impl<float>(cell, w_ih, w_hh, b_ih, b_hh, w_hr, w_peep);
  return pack_impl<double>(cell, w_ih, w_hh, b_ih, b_hh, w_hr, w_peep);
}

// The PackedLayer inside `packed` (None: null) after checking it was made for this call's
// kernels, dtype and layer shape: a mismatch would read the wrong panels.
template <typename T>
const PackedLayer* checked_packed(const py::object& packed, const std::string& cell_name, const LayerDims& d) {
  if (packed.is_none()) return nullptr;
  if (!py::isinstance<PackedWeights>(packed))
    throw py::type_error("packed must be None or the PackedWeights returned by pack_layer");
  const auto& pw = packed.cast<const PackedWeights&>();
  const PackedLayer& p = *pw.layer;
  check_packing_isa(p);
  const LayerDims& q = p.dims;
  if (pw.cell_name != cell_name || p.f64 != std::is_same_v<T, double> || q.I != d.I || q.H != d.H ||
      q.P != d.P || q.has_bias != d.has_bias || q.has_proj != d.has_proj || q.has_peep != d.has_peep)
    throw py::value_error("packed weights were made for a different layer (cell, dtype or shape) than this call's");
  return &p;
}

template <typename T>
py::tuple forward_impl(const std::string& cell_name, const py::array& x_obj, const py::object& h0_obj,
                       const py::object& c0_obj, const py::object& w_ih_obj, const py::object& w_hh_obj,
                       const py::object& b_ih_obj, const py::object& b_hh_obj,
                       const py::object& w_hr_obj, const py::object& lengths_obj, bool reverse,
                       bool training, const py::object& packed, const py::object& w_peep_obj,
                       bool outputs) {
  const Cell cell = parse_cell(cell_name);
  if (training && !outputs) throw py::value_error("outputs=False is for inference: training needs y");
  if (x_obj.ndim() != 3) throw py::value_error("x: expected shape (T, B, I), got " + shape_of(x_obj));
  LayerDims d = layer_dims(cell, x_obj.shape(0), x_obj.shape(1), x_obj.shape(2), w_hh_obj, b_ih_obj,
                           b_hh_obj, w_hr_obj);
  d.reverse = reverse;
  const pyrnn::index G = gate_count(cell);

  auto x = checked<T>(x_obj, "x", {d.T, d.B, d.I});
  auto h0 = checked<T>(h0_obj, "h0", {d.B, d.P});
  auto w_ih = checked<T>(w_ih_obj, "w_ih", {G * d.H, d.I});
  auto w_hh = checked<T>(w_hh_obj, "w_hh", {G * d.H, d.P});
  auto b_ih = optional_checked<T>(b_ih_obj, "b_ih", {G * d.H});
  auto b_hh = optional_checked<T>(b_hh_obj, "b_hh", {G * d.H});
  auto w_hr = optional_checked<T>(w_hr_obj, "w_hr", {d.P, d.H});
  auto w_peep = checked_peepholes<T>(w_peep_obj, d);
  std::optional<py::array_t<T>> c0;
  if (cell == Cell::Lstm) {
    if (c0_obj.is_none()) throw py::value_error("c0 is required for the LSTM");
    c0 = checked<T>(c0_obj, "c0", {d.B, d.H});
  } else if (!c0_obj.is_none()) {
    throw py::value_error("c0 is only for the LSTM");
  }
  auto lengths = checked_lengths(lengths_obj, d.T, d.B);

  const auto& kt = active_kernels();
  std::optional<py::array_t<T>> y;
  if (outputs) y = py::array_t<T>({d.T, d.B, d.P});
  py::array_t<T> h_n({d.B, d.P});
  std::optional<py::array_t<T>> c_n;
  if (cell == Cell::Lstm) c_n = py::array_t<T>({d.B, d.H});
  std::optional<py::array_t<T>> workspace;
  if (training) workspace = workspace_array<T>(kt.training_workspace_size(d));

  LayerForwardArgs<T> a{};
  a.x = x.data();
  a.h0 = h0.data();
  a.c0 = in_ptr(c0);
  a.w_ih = w_ih.data();
  a.w_hh = w_hh.data();
  a.b_ih = in_ptr(b_ih);
  a.b_hh = in_ptr(b_hh);
  a.w_hr = in_ptr(w_hr);
  a.lengths = lengths ? lengths->data() : nullptr;
  a.y = out_ptr(y);
  a.h_n = h_n.mutable_data();
  a.c_n = out_ptr(c_n);
  a.workspace = out_ptr(workspace);
  a.w_peep = in_ptr(w_peep);
  a.packed = checked_packed<T>(packed, cell_name, d);
  run_native([&] {
    if constexpr (std::is_same_v<T, float>) kt.layer_forward_f32(d, a);
    else kt.layer_forward_f64(d, a);
  });
  py::object c_n_out = c_n ? py::object(*c_n) : py::none();
  py::object cache = py::none();
  if (training) {
    LayerCache lc{d, x, lengths ? py::object(*lengths) : py::none(), *workspace};
    cache = py::cast(std::move(lc));
  }
  return py::make_tuple(y ? py::object(*y) : py::none(), h_n, c_n_out, cache);
}

py::tuple layer_forward(const std::string& cell, const py::array& x, const py::object& h0,
                        const py::object& c0, const py::object& w_ih, const py::object& w_hh,
                        const py::object& b_ih, const py::object& b_hh, const py::object& w_hr,
                        const py::object& lengths, bool reverse, bool training, const py::object& packed,
                        const py::object& w_peep, bool outputs) {
  if (is_float32(x, "x"))
    return forward_impl<float>(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, training, packed,
                               w_peep, outputs);
  return forward_impl<double>(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, training, packed,
                              w_peep, outputs);
}

// A streaming step touches only x, the state and the packed weights: nothing else to check.
template <typename T>
py::tuple step_impl(const py::array& x_obj, const py::object& h_obj, const py::object& c_obj,
                    const PackedWeights& pw) {
  LayerDims d = pw.layer->dims;
  if (pw.layer->f64 != std::is_same_v<T, double>)
    throw py::type_error(std::string("x must have the packed weights' dtype ") + (pw.layer->f64 ? "float64" : "float32"));
  if (x_obj.ndim() != 2 || x_obj.shape(1) != d.I)
    throw py::value_error("x: expected shape (B, " + std::to_string(d.I) + "), got " + shape_of(x_obj));
  d.T = 1;
  d.B = x_obj.shape(0);
  auto x = checked<T>(x_obj, "x", {d.B, d.I});
  auto h = checked_state<T>(h_obj, "h", d.B, d.P);
  std::optional<py::array_t<T>> c, c_new;
  if (d.cell == Cell::Lstm) {
    if (c_obj.is_none()) throw py::value_error("c is required for the LSTM");
    c = checked_state<T>(c_obj, "c", d.B, d.H);
    c_new = state_like(*c);
  } else if (!c_obj.is_none()) {
    throw py::value_error("c is only for the LSTM");
  }
  py::array_t<T> h_new = state_like(h);
  LayerForwardArgs<T> a{};
  a.x = x.data();
  a.h0 = h.data();
  a.c0 = in_ptr(c);
  a.y = h_new.mutable_data();
  a.h_n = a.y;
  a.c_n = out_ptr(c_new);
  a.packed = pw.layer.get();
  run_native([&] {
    const auto& kt = active_kernels();
    if constexpr (std::is_same_v<T, float>) kt.layer_step_f32(d, a);
    else kt.layer_step_f64(d, a);
  });
  return py::make_tuple(h_new, c_new ? py::object(*c_new) : py::none());
}

py::tuple layer_step(const py::array& x, const py::object& h, const py::object& c, const py::object& packed) {
  const PackedWeights* pw_ptr = nullptr;  // one type lookup: a step is a few microseconds
  try {
    pw_ptr = &packed.cast<const PackedWeights&>();
  } catch (const py::cast_error&) {
    throw py::type_error("packed must be the PackedWeights returned by pack_layer");
  }
  const auto& pw = *pw_ptr;
  check_packing_isa(*pw.layer);
  if (is_float32(x, "x")) return step_impl<float>(x, h, c, pw);
  return step_impl<double>(x, h, c, pw);
}

// Whether obj is what the streaming kernel takes as it is: a C-contiguous array of T in native
// byte order with exactly `shape`.
template <typename T>
bool ready(const py::handle& obj, std::initializer_list<py::ssize_t> shape) {
  if (!py::isinstance<py::array>(obj)) return false;
  auto arr = py::reinterpret_borrow<py::array>(obj);
  const py::dtype dt = arr.dtype();
  if (dt.num() != py::dtype::num_of<T>() || dt.byteorder() == '>' || dt.byteorder() == '<') return false;
  if (!(arr.flags() & py::array::c_style) || arr.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  py::ssize_t axis = 0;
  for (py::ssize_t n : shape)
    if (arr.shape(axis++) != n) return false;
  return true;
}

template <typename T>
py::object step_if_ready_impl(const py::handle& x, const py::handle& h, const py::handle& c,
                              const PackedWeights& pw, bool stacked) {
  const LayerDims& d = pw.layer->dims;
  if (!py::isinstance<py::array>(x)) return py::none();
  const auto x_arr = py::reinterpret_borrow<py::array>(x);
  if (x_arr.ndim() != 2) return py::none();
  const py::ssize_t B = x_arr.shape(0);
  if (B == 0 || !ready<T>(x, {B, d.I})) return py::none();
  const bool state_ok = stacked ? ready<T>(h, {1, B, d.P}) : ready<T>(h, {B, d.P});
  if (!state_ok) return py::none();
  if (d.cell == Cell::Lstm) {
    if (!(stacked ? ready<T>(c, {1, B, d.H}) : ready<T>(c, {B, d.H}))) return py::none();
  } else if (!c.is_none()) {
    return py::none();
  }
  return step_impl<T>(x_arr, py::reinterpret_borrow<py::object>(h),
                      py::reinterpret_borrow<py::object>(c), pw);
}

// The streaming fast path: layer_step when x (B, I) and the states ((1, B, n) with `stacked`,
// else (B, n)) are exactly what the kernel takes and the packing is for the active ISA; None
// otherwise, so that the caller converts and checks them (no exception on the way).
py::object layer_step_if_ready(const py::handle& x, const py::handle& h, const py::handle& c,
                               const py::handle& packed, bool stacked) {
  const auto& pw = py::cast<const PackedWeights&>(packed);
  if (std::strcmp(pw.layer->isa, active_isa()) != 0) return py::none();
  if (pw.layer->f64) return step_if_ready_impl<double>(x, h, c, pw, stacked);
  return step_if_ready_impl<float>(x, h, c, pw, stacked);
}

template <typename T>
py::tuple backward_impl(const std::string& cell_name, const LayerCache& cache, const py::object& dy_obj,
                        const py::object& dh_n_obj, const py::object& dc_n_obj,
                        const py::object& w_ih_obj, const py::object& w_hh_obj,
                        const py::object& w_hr_obj, const py::object& dw_ih_obj,
                        const py::object& dw_hh_obj, const py::object& db_ih_obj,
                        const py::object& db_hh_obj, const py::object& dw_hr_obj,
                        const py::object& w_peep_obj, const py::object& dw_peep_obj, bool input_grad) {
  const LayerDims& d = cache.dims;
  if (parse_cell(cell_name) != d.cell)
    throw py::value_error(std::string("cache was made by a '") + name_of(d.cell) + "' forward, not '" + cell_name +
                          "'");
  const pyrnn::index G = gate_count(d.cell);
  auto x = checked<T>(cache.x, "cache.x", {d.T, d.B, d.I});
  auto workspace = checked<T>(cache.workspace, "cache.workspace",
                              {active_kernels().training_workspace_size(d)});
  auto w_ih = checked<T>(w_ih_obj, "w_ih", {G * d.H, d.I});
  auto w_hh = checked<T>(w_hh_obj, "w_hh", {G * d.H, d.P});
  if (d.has_proj == w_hr_obj.is_none()) throw py::value_error("w_hr must be given exactly when the forward had a projection");
  auto w_hr = optional_checked<T>(w_hr_obj, "w_hr", {d.P, d.H});
  auto dy = optional_checked<T>(dy_obj, "dy", {d.T, d.B, d.P});
  auto dh_n = optional_checked<T>(dh_n_obj, "dh_n", {d.B, d.P});
  std::optional<py::array_t<T>> dc_n;
  if (d.cell == Cell::Lstm) dc_n = optional_checked<T>(dc_n_obj, "dc_n", {d.B, d.H});
  else if (!dc_n_obj.is_none()) throw py::value_error("dc_n is only for the LSTM");
  auto dw_ih = grad_checked<T>(dw_ih_obj, "dw_ih", {G * d.H, d.I});
  auto dw_hh = grad_checked<T>(dw_hh_obj, "dw_hh", {G * d.H, d.P});
  if (!dw_ih || !dw_hh) throw py::value_error("dw_ih and dw_hh are required");
  auto db_ih = grad_checked<T>(db_ih_obj, "db_ih", {G * d.H});
  auto db_hh = grad_checked<T>(db_hh_obj, "db_hh", {G * d.H});
  if (d.has_bias != (db_ih && db_hh)) throw py::value_error("db_ih and db_hh must be given exactly when the layer has biases");
  auto dw_hr = grad_checked<T>(dw_hr_obj, "dw_hr", {d.P, d.H});
  if (d.has_proj != dw_hr.has_value()) throw py::value_error("dw_hr must be given exactly when the layer has a projection");
  if (d.has_peep == w_peep_obj.is_none()) throw py::value_error("w_peep must be given exactly when the forward had peepholes");
  auto w_peep = optional_checked<T>(w_peep_obj, "w_peep", {3 * d.H});
  auto dw_peep = grad_checked<T>(dw_peep_obj, "dw_peep", {3 * d.H});
  if (d.has_peep != dw_peep.has_value()) throw py::value_error("dw_peep must be given exactly when the layer has peepholes");
  std::optional<py::array_t<std::int64_t>> lengths;
  if (!cache.lengths.is_none()) lengths = checked<std::int64_t>(cache.lengths, "cache.lengths", {d.B});

  std::optional<py::array_t<T>> dx;
  if (input_grad) dx = py::array_t<T>({d.T, d.B, d.I});
  py::array_t<T> dh0({d.B, d.P});
  std::optional<py::array_t<T>> dc0;
  if (d.cell == Cell::Lstm) dc0 = py::array_t<T>({d.B, d.H});

  LayerBackwardArgs<T> a{};
  a.x = x.data();
  a.w_ih = w_ih.data();
  a.w_hh = w_hh.data();
  a.w_hr = in_ptr(w_hr);
  a.lengths = lengths ? lengths->data() : nullptr;
  a.workspace = workspace.data();
  a.dy = in_ptr(dy);
  a.dh_n = in_ptr(dh_n);
  a.dc_n = in_ptr(dc_n);
  a.dx = out_ptr(dx);
  a.dh0 = dh0.mutable_data();
  a.dc0 = out_ptr(dc0);
  a.dw_ih = out_ptr(dw_ih);
  a.dw_hh = out_ptr(dw_hh);
  a.db_ih = out_ptr(db_ih);
  a.db_hh = out_ptr(db_hh);
  a.dw_hr = out_ptr(dw_hr);
  a.w_peep = in_ptr(w_peep);
  a.dw_peep = out_ptr(dw_peep);
  run_native([&] {
    const auto& kt = active_kernels();
    if constexpr (std::is_same_v<T, float>) kt.layer_backward_f32(d, a);
    else kt.layer_backward_f64(d, a);
  });
  return py::make_tuple(dx ? py::object(*dx) : py::none(), dh0, dc0 ? py::object(*dc0) : py::none());
}

py::tuple layer_backward(const std::string& cell, const py::object& cache_obj, const py::object& dy,
                         const py::object& dh_n, const py::object& dc_n, const py::object& w_ih,
                         const py::object& w_hh, const py::object& w_hr, const py::object& dw_ih,
                         const py::object& dw_hh, const py::object& db_ih, const py::object& db_hh,
                         const py::object& dw_hr, const py::object& w_peep, const py::object& dw_peep,
                         bool input_grad) {
  const auto& cache = cast_training_cache<LayerDims>(cache_obj, "LayerCache", "layer_forward");
  if (is_float32(cache.x, "cache.x"))
    return backward_impl<float>(cell, cache, dy, dh_n, dc_n, w_ih, w_hh, w_hr, dw_ih, dw_hh, db_ih, db_hh, dw_hr,
                                w_peep, dw_peep, input_grad);
  return backward_impl<double>(cell, cache, dy, dh_n, dc_n, w_ih, w_hh, w_hr, dw_ih, dw_hh, db_ih, db_hh, dw_hr,
                               w_peep, dw_peep, input_grad);
}

py::list available_isas() {
  py::list out;
  for (const char* name : {"baseline", "avx2", "avx_vnni", "avx512", "avx512_vnni"})
    if (isa_available(name)) out.append(name);
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyrnn's native kernels (private: use the pyrnn package)";
  m.attr("__version__") = PYRNN_VERSION;  // pyrnn/__init__.py refuses a module of another version

  bind_training_cache<LayerDims>(m, "LayerCache", "layer_forward");

  py::register_exception<StalePacking>(m, "StalePackedWeights", PyExc_ValueError);
  py::class_<PackedWeights>(m, "PackedWeights",
                            "A layer's weights packed for the active kernels by pack_layer (opaque).")
      .def_property_readonly("isa", [](const PackedWeights& p) { return std::string(p.layer->isa); });

  m.def("pack_layer", &pack_layer, py::arg("cell"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("w_hr"), py::arg("w_peep") = py::none(),
        "The weights of one layer and direction packed once for the active kernels (a copy: "
        "later changes to the arrays do not reach it), for layer_forward and layer_step.");
  m.def("layer_forward", &layer_forward, py::arg("cell"), py::arg("x"), py::arg("h0"), py::arg("c0"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("w_hr"),
        py::arg("lengths"), py::arg("reverse"), py::arg("training"), py::arg("packed"),
        py::arg("w_peep") = py::none(), py::arg("outputs") = true,
        "One layer, one direction, whole sequence; packed: pack_layer of the same weights or None. "
        "Returns (y, h_n, c_n or None, cache or None); y is None with outputs=False (inference "
        "that needs only the final state).");
  m.def("layer_step", &layer_step, py::arg("x"), py::arg("h"), py::arg("c"), py::arg("packed"),
        "One inference step of one layer and direction on pack_layer's weights: x (B, I), h (B, P), "
        "c (B, H) or None (states may also be (1, B, P) and (1, B, H)). Returns (h_new, c_new or "
        "None) shaped like h and c.");
  m.def("layer_step_if_ready", &layer_step_if_ready, py::arg("x"), py::arg("h"), py::arg("c"),
        py::arg("packed"), py::arg("stacked"),
        "layer_step when x (B, I) and the states ((1, B, n) if stacked else (B, n)) are C-contiguous "
        "arrays of the packing's dtype in native byte order and the packing is for the active ISA; "
        "None otherwise (nothing is raised for arrays that do not fit).");
  m.def("layer_backward", &layer_backward, py::arg("cell"), py::arg("cache"), py::arg("dy"),
        py::arg("dh_n"), py::arg("dc_n"), py::arg("w_ih"), py::arg("w_hh"), py::arg("w_hr"),
        py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih"), py::arg("db_hh"), py::arg("dw_hr"),
        py::arg("w_peep") = py::none(), py::arg("dw_peep") = py::none(), py::arg("input_grad") = true,
        "BPTT through the forward that made `cache`; accumulates weight gradients in place. "
        "Returns (dx, dh0, dc0 or None); dx is None with input_grad=False (the input's gradient "
        "is not needed, as for a model's data).");

  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("fork_limited", &fork_limited,
        "Whether this process was forked after OpenMP's pool ran: native calls then use one thread.");
  m.def("active_isa", &active_isa);
  m.def("available_isas", &available_isas);
  m.def("select_isa", [](const std::string& name) {
    try {
      select_isa(name.c_str());
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }, py::arg("name"));
  m.def("compiler", [] {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return std::string("unknown");
#endif
  });
  m.def("openmp_version", [] { return _OPENMP; });
  m.def("omp_max_threads", [] { return omp_get_max_threads(); });

  bind_testing(m);
  bind_xlstm(m);
  bind_blocks(m);
  bind_quant(m);
  record_main_thread();  // Ctrl-C stops long calls made on this thread (native_call.h)

  // Choose the instruction set now so that a bad PYRNN_ISA fails at import, loudly.
  try {
    active_kernels();
  } catch (const std::invalid_argument& e) {
    throw py::import_error(e.what());
  }
}
