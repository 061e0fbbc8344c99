// The state of one forward step and its element-wise cell math, fused per SIMD register:
// for a row b and a block of units [u0, u0+n), the gate pre-activations (recurrent product
// z plus input projection x plus folded bias) go through their activations, the state update
// and the stores without leaving registers. Included by layer_forward.cpp only.
#pragma once

#include <algorithm>
#include <type_traits>

#include "kernels/barrier.h"
#include "kernels/gemm.h"
#include "kernels/layer_plan.h"
#include "kernels/packed_layer.h"
#include "vec/lanes.h"
#include "vec/vec_math.h"

namespace pyrnn::PYRNN_ISA {

// Everything a thread needs to run one step; pointers are for the current step.
template <typename T>
struct Step {
  index t;                 // real time of this step
  const T* h_in;           // (B, P) state entering the step
  T* h_out;                // (B, P) state leaving it
  const T* c_in;           // (B, H) LSTM
  T* c_out;                // (B, H) LSTM (may equal c_in)
  T* xg;                   // (B, G*H) input projection of this step; activated gates in training
  T* y;                    // (B, P) output rows of this step; null: no outputs wanted
  bool xg_blocked = false; // xg's columns gate-blocked as the panels (products on cached w_in)
};

template <typename T>
struct ForwardContext {
  const LayerDims& d;
  const LayerForwardArgs<T>& a;
  index G, GH;
  UnitBlocks blocks;       // hidden units
  UnitBlocks out_blocks;   // output columns of the projection (LSTM with proj_size)
  Workspace<T> ws;         // null members in inference
  const PackedLayerWeights<T>* packed;  // the recurrent (and projection) panels
  const T* bias;           // (G*H) folded bias, PyTorch gate order (zeros without biases)
  const T* peep;           // (3*H) peephole LSTM: p_i, p_f, p_o; else null
  T* hg;                   // (B, G*H) recurrent products, gate-blocked columns
  T* hraw;                 // (B, H) projected LSTM: o*tanh(c) of this step
  T* scratch;              // (B, H) per-step temporaries (tanh(c), h W_hn^T + b_hn, r*h)
  StepBarrier* barrier;    // the time loop's team
};

// Row b's input projection from unit u0: gate g's units at p + g*stride (in training they are
// overwritten with the activated gates, which BPTT reads), and the folded bias.
template <typename T>
struct XRow {
  T* p;
  index stride;
  const T* bias;        // the folded bias at unit u0, gate g at + g*H
  index H;
  // Gate g's lanes at offset k: x + bias.
  Vec<T> load(const Lanes<T>& l, index g, index k) const {
    return l.load(p + g * stride + k) + l.load(bias + g * H + k);
  }
  T* at(index g) const { return p + g * stride; }
};
template <typename T>
XRow<T> x_row(const ForwardContext<T>& c, const Step<T>& s, index b, index u0, index n) {
  const index H = c.d.H;
  if (s.xg_blocked) return {s.xg + b * c.GH + c.G * u0, n, c.bias + u0, H};
  return {s.xg + b * c.GH + u0, H, c.bias + u0, H};
}

// z (G*n): gate-blocked recurrent products of the block. A gate's pre-activation is
// z + (x + bias), the same sum in the same order on every path (steps equal the forward).
// The row functions are inlined into the step's loop over blocks (one loop nest per row).
template <typename T>
PYRNN_ALWAYS_INLINE Vec<T> pre_activation(const T* z, index n, const XRow<T>& x, index g, index k,
                                          const Lanes<T>& l) {
  return l.load(z + g * n + k) + x.load(l, g, k);
}

template <typename T>
PYRNN_ALWAYS_INLINE void rnn_row(const ForwardContext<T>& c, const Step<T>& s, index b, index u0, index n, const T* z) {
  using V = Vec<T>;
  const index H = c.d.H;
  const XRow<T> x = x_row(c, s, b, u0, n);
  T* h = s.h_out + b * H + u0;
  T* y = s.y && s.y != s.h_out ? s.y + b * H + u0 : nullptr;
  const bool relu = c.d.cell == Cell::RnnRelu;
  for_lanes<T>(n, [&](index k, Lanes<T> l) PYRNN_INLINE_LAMBDA {
    const V pre = pre_activation(z, n, x, 0, k, l);
    const V hv = relu ? max(V::zero(), pre) : tanh_v(pre);  // max passes NaN through
    l.store(hv, h + k);
    if (y) l.store(hv, y + k);
    if (c.ws.gates) l.store(hv, x.at(0) + k);
  });
}

// Peephole LSTM (Peep): i and f add p_i * c_{t-1} and p_f * c_{t-1} to their pre-activations,
// o adds p_o * c_t, so o's sigmoid waits for the new cell state.
template <bool Peep, typename T>
PYRNN_ALWAYS_INLINE void lstm_row(const ForwardContext<T>& c, const Step<T>& s, index b, index u0, index n, const T* z) {
  using V = Vec<T>;
  const index H = c.d.H, P = c.d.P;
  const XRow<T> x = x_row(c, s, b, u0, n);
  const T* c_prev = s.c_in + b * H + u0;
  T* c_next = s.c_out + b * H + u0;
  T* tanhc = c.ws.tanhc ? c.ws.tanhc + (s.t * c.d.B + b) * H + u0 : nullptr;
  T* h = c.d.has_proj ? c.hraw + b * H + u0 : s.h_out + b * P + u0;
  T* y = c.d.has_proj || !s.y || s.y == s.h_out ? nullptr : s.y + b * P + u0;
  const T* peep = Peep ? c.peep + u0 : nullptr;  // p_i, p_f, p_o at + 0, H, 2H
  const V one = V::broadcast(T(1));
  for_lane_groups<T>(n, [&](const auto& group) PYRNN_INLINE_LAMBDA {
    constexpr int N = std::decay_t<decltype(group)>::size;
    auto pre = [&](int u, index g) { return pre_activation(z, n, x, g, group.at(u), group.lanes[u]); };
    // The peephole term p_g * state of gate slot g (0: i, 1: f, 2: o) added to `a`.
    auto peephole = [&](int u, int g, const V& a, const V& state) {
      return fma(group.lanes[u].load(peep + g * H + group.at(u)), state, a);
    };
    // i*g and o*tanh(c) each with one division (sigmoid and tanh as fractions, see
    // vec_math.h): divisions are the slowest part of the cell math.
    V zg[N], di[N], f[N], d_o[N], r_ig[N], cv[N], r_oc[N], hv[N], cp[N];
    Fraction<T> gt[N], ct[N];
    group.each([&](int u) { cp[u] = group.lanes[u].load(c_prev + group.at(u)); });
    group.each([&](int u) { zg[u] = pre(u, 2); });
    group.each([&](int u) { gt[u] = tanh_fraction_v(zg[u]); });
    if constexpr (Peep) {
      group.each([&](int u) { di[u] = sigmoid_denominator_v(peephole(u, 0, pre(u, 0), cp[u])); });
      group.each([&](int u) { f[u] = sigmoid_denominator_v(peephole(u, 1, pre(u, 1), cp[u])); });
    } else {
      group.each([&](int u) { di[u] = sigmoid_denominator_v(pre(u, 0)); });
      group.each([&](int u) { f[u] = sigmoid_denominator_v(pre(u, 1)); });
      group.each([&](int u) { d_o[u] = sigmoid_denominator_v(pre(u, 3)); });
    }
    group.each([&](int u) { r_ig[u] = one / (di[u] * gt[u].den); });
    group.each([&](int u) { f[u] = one / f[u]; });
    group.each([&](int u) { cv[u] = fma(f[u], cp[u], copysign(gt[u].num * r_ig[u], zg[u])); });
    if constexpr (Peep) {
      group.each([&](int u) { d_o[u] = sigmoid_denominator_v(peephole(u, 2, pre(u, 3), cv[u])); });
    }
    group.each([&](int u) { ct[u] = tanh_fraction_v(cv[u]); });
    group.each([&](int u) { r_oc[u] = one / (d_o[u] * ct[u].den); });
    group.each([&](int u) { hv[u] = copysign(ct[u].num * r_oc[u], cv[u]); });
    group.each([&](int u) {
      const Lanes<T>& l = group.lanes[u];
      const index k = group.at(u);
      l.store(cv[u], c_next + k);
      l.store(hv[u], h + k);
      if (y) l.store(hv[u], y + k);
      if (tanhc) {
        // BPTT's activated gates: i and o from the shared reciprocals (an overflowing
        // denominator gives the limit 0), g and tanh(c) on their own.
        l.store(gt[u].den * r_ig[u], x.at(0) + k);
        l.store(f[u], x.at(1) + k);
        l.store(copysign(gt[u].num / gt[u].den, zg[u]), x.at(2) + k);
        l.store(ct[u].den * r_oc[u], x.at(3) + k);
        l.store(copysign(ct[u].num / ct[u].den, cv[u]), tanhc + k);
      }
    });
  });
}

// GRU, reset gate after the product (PyTorch): n = tanh(x_n + r * (h W_hn^T + b_hn)),
// h' = n + z (h - n).
template <typename T>
PYRNN_ALWAYS_INLINE void gru_row(const ForwardContext<T>& c, const Step<T>& s, index b, index u0, index n, const T* z) {
  using V = Vec<T>;
  const index H = c.d.H;
  const XRow<T> x = x_row(c, s, b, u0, n);
  const T* b_hn = c.a.b_hh ? c.a.b_hh + 2 * H + u0 : nullptr;
  T* hn_store = c.ws.hn_lin ? c.ws.hn_lin + (s.t * c.d.B + b) * H + u0 : nullptr;
  const T* h_prev = s.h_in + b * H + u0;
  T* h = s.h_out + b * H + u0;
  T* y = s.y && s.y != s.h_out ? s.y + b * H + u0 : nullptr;
  for_lane_groups<T>(n, [&](const auto& group) PYRNN_INLINE_LAMBDA {
    constexpr int N = std::decay_t<decltype(group)>::size;
    V r[N], u[N], hn[N], nv[N];
    auto pre = [&](int i, index g) { return pre_activation(z, n, x, g, group.at(i), group.lanes[i]); };
    group.each([&](int i) { r[i] = sigmoid_v(pre(i, 0)); });
    group.each([&](int i) { u[i] = sigmoid_v(pre(i, 1)); });
    group.each([&](int i) {
      const V zn = group.lanes[i].load(z + 2 * n + group.at(i));
      hn[i] = b_hn ? zn + group.lanes[i].load(b_hn + group.at(i)) : zn;
    });
    group.each([&](int i) { nv[i] = tanh_v(fma(r[i], hn[i], x.load(group.lanes[i], 2, group.at(i)))); });
    group.each([&](int i) {
      const Lanes<T>& l = group.lanes[i];
      const index k = group.at(i);
      const V hv = fma(u[i], l.load(h_prev + k) - nv[i], nv[i]);
      l.store(hv, h + k);
      if (y) l.store(hv, y + k);
      if (hn_store) {
        l.store(hn[i], hn_store + k);
        l.store(r[i], x.at(0) + k);
        l.store(u[i], x.at(1) + k);
        l.store(nv[i], x.at(2) + k);
      }
    });
  });
}

// GRU, reset gate before the product (ONNX default), first phase: r and z into z (kept for
// the second phase) and r*h into the scratch row that the W_hn product reads.
template <typename T>
PYRNN_ALWAYS_INLINE void gru_rb_gates_row(const ForwardContext<T>& c, const Step<T>& s, index b, index u0, index n, T* z) {
  using V = Vec<T>;
  const index H = c.d.H;
  const XRow<T> x = x_row(c, s, b, u0, n);
  const T* h_prev = s.h_in + b * H + u0;
  T* rh = c.scratch + b * H + u0;
  for_lanes<T>(n, [&](index k, Lanes<T> l) PYRNN_INLINE_LAMBDA {
    const V r = sigmoid_v(pre_activation(z, n, x, 0, k, l));
    const V u = sigmoid_v(pre_activation(z, n, x, 1, k, l));
    l.store(r, z + k);
    l.store(u, z + n + k);
    l.store(r * l.load(h_prev + k), rh + k);
  });
}

// Second phase: hn = (r*h) W_hn^T of the block (b_hn is in the folded bias), z_rz: phase
// one's r, z.
template <typename T>
PYRNN_ALWAYS_INLINE void gru_rb_state_row(const ForwardContext<T>& c, const Step<T>& s, index b, index u0, index n,
                      const T* z_rz, const T* hn) {
  using V = Vec<T>;
  const index H = c.d.H;
  const XRow<T> x = x_row(c, s, b, u0, n);
  const T* h_prev = s.h_in + b * H + u0;
  T* h = s.h_out + b * H + u0;
  T* y = s.y && s.y != s.h_out ? s.y + b * H + u0 : nullptr;
  for_lanes<T>(n, [&](index k, Lanes<T> l) PYRNN_INLINE_LAMBDA {
    const V u = l.load(z_rz + n + k);
    const V nv = tanh_v(l.load(hn + k) + x.load(l, 2, k));
    const V hv = fma(u, l.load(h_prev + k) - nv, nv);
    l.store(hv, h + k);
    if (y) l.store(hv, y + k);
    if (c.ws.gates) {
      l.store(l.load(z_rz + k), x.at(0) + k);
      l.store(u, x.at(1) + k);
      l.store(nv, x.at(2) + k);
    }
  });
}

}  // namespace pyrnn::PYRNN_ISA
