// Bindings of quantized inference (csrc/quant_api.h): packing a layer's int8 / bfloat16
// weights for the active kernels into a PackedWeights, and its forward over a sequence, which
// runs the float time loop of the kernel table on the quantized packing (streaming steps take
// the packing through layer_step like a float one).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "array_checks.h"
#include "packed_weights.h"
#include "pyrnn.h"
#include "quant_api.h"

namespace py = pybind11;
using namespace pyrnn;
using namespace pyrnn::bind;

namespace {

Cell quant_cell(const std::string& name) {
  if (name == "rnn_tanh") return Cell::RnnTanh;
  if (name == "rnn_relu") return Cell::RnnRelu;
  if (name == "lstm") return Cell::Lstm;
  if (name == "gru") return Cell::Gru;
  if (name == "gru_reset_before") return Cell::GruResetBefore;
  throw py::value_error("cell must be one of rnn_tanh, rnn_relu, lstm, gru, gru_reset_before; got '" + name + "'");
}

// Weights of one layer for `type`: int8 with float32 row scales, or bfloat16 bits as uint16.
struct QuantWeight {
  py::array w;
  std::optional<py::array_t<float>> scale;
};

QuantWeight quant_weight(const std::string& type, const py::object& w, const py::object& s,
                         const char* name, const char* scale_name, pyrnn::index rows, pyrnn::index cols) {
  if (type == "int8") return {checked<std::int8_t>(w, name, {rows, cols}), checked<float>(s, scale_name, {rows})};
  if (!s.is_none()) throw py::value_error(std::string(scale_name) + " must be None for bf16 weights");
  return {checked<std::uint16_t>(w, name, {rows, cols}), std::nullopt};
}

PackedWeights pack(const std::string& type, const std::string& cell_name, const py::object& w_ih_obj,
                      const py::object& s_ih_obj, const py::object& w_hh_obj, const py::object& s_hh_obj,
                      const py::object& b_ih_obj, const py::object& b_hh_obj, const py::object& w_hr_obj,
                      const py::object& s_hr_obj) {
  if (type != "int8" && type != "bf16") throw py::value_error("type must be 'int8' or 'bf16', got '" + type + "'");
  LayerDims d{};
  d.cell = quant_cell(cell_name);
  const pyrnn::index G = gate_count(d.cell);
  for (const auto& [obj, name] : {std::pair{&w_ih_obj, "w_ih"}, std::pair{&w_hh_obj, "w_hh"}})
    if (!py::isinstance<py::array>(*obj) || py::reinterpret_borrow<py::array>(*obj).ndim() != 2)
      throw py::value_error(std::string(name) + " must be a 2-D array");
  const auto w_hh_arr = py::reinterpret_borrow<py::array>(w_hh_obj);
  d.I = py::reinterpret_borrow<py::array>(w_ih_obj).shape(1);
  d.H = w_hh_arr.shape(0) / G;
  d.P = w_hh_arr.shape(1);
  d.has_bias = !b_ih_obj.is_none();
  d.has_proj = !w_hr_obj.is_none();
  if (d.has_proj && d.cell != Cell::Lstm) throw py::value_error("w_hr (projection) is LSTM only");
  if (!d.has_proj && d.P != d.H)
    throw py::value_error("w_hh: expected shape " + shape_str({G * d.H, d.H}) + ", got " + shape_of(w_hh_arr));
  if (d.has_bias == b_hh_obj.is_none()) throw py::value_error("b_ih and b_hh must both be given or both be None");
  // int8 sums stay exact in int32 below this many terms (quant.h)
  constexpr pyrnn::index kMaxTerms = 133000;
  if (type == "int8" && std::max({d.I, d.H, d.P}) >= kMaxTerms)
    throw py::value_error("int8 quantization supports input and hidden sizes below " + std::to_string(kMaxTerms) +
                          " (its int32 sums would overflow); got I=" + std::to_string(d.I) + ", H=" +
                          std::to_string(d.H));
  const QuantWeight w_ih = quant_weight(type, w_ih_obj, s_ih_obj, "w_ih", "s_ih", G * d.H, d.I);
  const QuantWeight w_hh = quant_weight(type, w_hh_obj, s_hh_obj, "w_hh", "s_hh", G * d.H, d.P);
  std::optional<QuantWeight> w_hr;
  if (d.has_proj) w_hr = quant_weight(type, w_hr_obj, s_hr_obj, "w_hr", "s_hr", d.P, d.H);
  auto b_ih = optional_checked<float>(b_ih_obj, "b_ih", {G * d.H});
  auto b_hh = optional_checked<float>(b_hh_obj, "b_hh", {G * d.H});
  auto scale = [](const std::optional<QuantWeight>& w) { return w && w->scale ? w->scale->data() : nullptr; };
  QuantLayerArgs a{};
  a.w_ih = w_ih.w.data();
  a.s_ih = scale(w_ih);
  a.w_hh = w_hh.w.data();
  a.s_hh = scale(w_hh);
  a.w_hr = w_hr ? w_hr->w.data() : nullptr;
  a.s_hr = scale(w_hr);
  a.b_ih = in_ptr(b_ih);
  a.b_hh = in_ptr(b_hh);
  PackedWeights out{cell_name, nullptr};
  {
    py::gil_scoped_release release;
    const QuantKernels k = active_quant_kernels();
    const bool dot = type == "int8" ? k.int8_dot : k.bf16_dot;
    out.layer.reset(k.pack(type == "int8" ? QuantType::Int8 : QuantType::Bf16, dot, active_isa(), d, a));
  }
  return out;
}

// The packing of a quantized layer for the active kernels.
const PackedWeights& checked_packing(const py::object& obj) {
  if (!py::isinstance<PackedWeights>(obj))
    throw py::type_error("packed must be the PackedWeights returned by quant_pack_layer");
  const auto& p = obj.cast<const PackedWeights&>();
  if (std::strcmp(p.layer->isa, active_isa()) != 0)
    throw py::value_error(std::string("quantized weights were packed for the ") + p.layer->isa + " kernels, but " +
                          active_isa() + " is active now: pack them again");
  return p;
}

py::tuple forward(const py::array& x_obj, const py::object& h0_obj, const py::object& c0_obj,
                  const py::object& b_hh_obj, const py::object& packed, const py::object& lengths_obj,
                  bool reverse) {
  const PackedWeights& p = checked_packing(packed);
  LayerDims d = p.layer->dims;
  if (x_obj.ndim() != 3 || x_obj.shape(2) != d.I)
    throw py::value_error("x: expected shape (T, B, " + std::to_string(d.I) + "), got " + shape_of(x_obj));
  d.T = x_obj.shape(0);
  d.B = x_obj.shape(1);
  d.reverse = reverse;
  const bool lstm = d.cell == Cell::Lstm;
  auto x = checked<float>(x_obj, "x", {d.T, d.B, d.I});
  auto h0 = checked<float>(h0_obj, "h0", {d.B, d.P});
  std::optional<py::array_t<float>> c0, c_n;
  if (lstm) {
    c0 = checked<float>(c0_obj, "c0", {d.B, d.H});
    c_n = py::array_t<float>({d.B, d.H});
  } else if (!c0_obj.is_none()) {
    throw py::value_error("c0 is only for the LSTM");
  }
  auto lengths = checked_lengths(lengths_obj, d.T, d.B);
  if (d.has_bias == b_hh_obj.is_none()) throw py::value_error("b_hh must be given exactly when the layer has biases");
  auto b_hh = optional_checked<float>(b_hh_obj, "b_hh", {gate_count(d.cell) * d.H});
  py::array_t<float> y({d.T, d.B, d.P});
  py::array_t<float> h_n({d.B, d.P});
  LayerForwardArgs<float> a{};
  a.x = x.data();
  a.h0 = h0.data();
  a.c0 = in_ptr(c0);
  a.b_hh = in_ptr(b_hh);  // GRU's b_hn, added per step
  a.lengths = lengths ? lengths->data() : nullptr;
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = out_ptr(c_n);
  a.packed = p.layer.get();
  {
    py::gil_scoped_release release;
    active_kernels().layer_forward_f32(d, a);
  }
  return py::make_tuple(y, h_n, c_n ? py::object(*c_n) : py::none());
}

// c = a w^T on the active kernels, as the layers' products compute it (for tests).
py::array_t<float> matmul(const std::string& type, const py::object& a_obj, const py::object& w_obj,
                          const py::object& s_obj) {
  if (type != "int8" && type != "bf16") throw py::value_error("type must be 'int8' or 'bf16', got '" + type + "'");
  if (!py::isinstance<py::array>(a_obj) || !py::isinstance<py::array>(w_obj) ||
      py::reinterpret_borrow<py::array>(a_obj).ndim() != 2 || py::reinterpret_borrow<py::array>(w_obj).ndim() != 2)
    throw py::value_error("a and w must be 2-D arrays");
  const auto a_arr = py::reinterpret_borrow<py::array>(a_obj), w_arr = py::reinterpret_borrow<py::array>(w_obj);
  const pyrnn::index M = a_arr.shape(0), K = a_arr.shape(1), N = w_arr.shape(0);
  auto a = checked<float>(a_obj, "a", {M, K});
  const QuantWeight w = quant_weight(type, w_obj, s_obj, "w", "s", N, K);
  py::array_t<float> c({M, N});
  {
    py::gil_scoped_release release;
    const QuantKernels k = active_quant_kernels();
    const bool int8 = type == "int8";
    k.matmul(int8 ? QuantType::Int8 : QuantType::Bf16, int8 ? k.int8_dot : k.bf16_dot, M, N, K, a.data(),
             w.w.data(), w.scale ? w.scale->data() : nullptr, c.mutable_data());
  }
  return c;
}

// What the active ISA runs for each quantized type, in words (for pyrnn info).
py::dict kernel_names() {
  const std::string isa = active_isa();
  const QuantKernels k = active_quant_kernels();
  py::dict out;
  if (k.int8_dot) out["int8"] = isa == "avx512_vnni" ? "AVX-512 VNNI vpdpbusd" : "AVX-VNNI vpdpbusd (256-bit)";
  else if (isa == "avx512") out["int8"] = "AVX-512BW vpmaddubsw + vpmaddwd";
  else if (isa == "avx2") out["int8"] = "AVX2 vpmaddubsw + vpmaddwd";
  else out["int8"] = "scalar C++";
  if (k.bf16_dot) out["bf16"] = "AVX-512 BF16 vdpbf16ps";
  else if (isa == "avx512" || isa == "avx512_vnni") out["bf16"] = "AVX-512F, bf16 widened to float32 + FMA";
  else if (isa == "avx2" || isa == "avx_vnni") out["bf16"] = "AVX2, bf16 widened to float32 + FMA";
  else out["bf16"] = "scalar C++";
  return out;
}

}  // namespace

void bind_quant(py::module_& m) {
  m.def("quant_pack_layer", &pack, py::arg("type"), py::arg("cell"), py::arg("w_ih"), py::arg("s_ih"),
        py::arg("w_hh"), py::arg("s_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("w_hr"), py::arg("s_hr"),
        "One layer and direction's quantized weights packed for the active kernels: type 'int8' "
        "(int8 weights, float32 row scales s_*) or 'bf16' (uint16 bfloat16 bits, scales None); "
        "float32 biases or None. A PackedWeights that layer_step and layer_step_if_ready take as "
        "they take pack_layer's, and quant_layer_forward.");
  m.def("quant_layer_forward", &forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("b_hh"),
        py::arg("packed"), py::arg("lengths"), py::arg("reverse"),
        "Inference of one quantized layer and direction over a sequence: x (T, B, I) float32, b_hh "
        "the float32 recurrent bias or None. Returns (y, h_n, c_n or None).");
  m.def("_quant_matmul", &matmul, py::arg("type"), py::arg("a"), py::arg("w"), py::arg("s"),
        "c = a w^T with w int8 (scales s per row) or bfloat16 bits (s None), as the quantized layers' "
        "products compute it (for tests).");
  m.def("quant_kernels", &kernel_names, "What the active ISA runs for int8 and bf16 products.");
}
