// Backpropagation through time of one layer in one direction.
//
// The time loop runs in one OpenMP parallel region, in the reverse of the forward's order.
// Per step each thread (a) turns the gradient of its units' outputs into gate
// pre-activation gradients dG (element-wise, from the activated gates the forward kept),
// then, after a barrier, (b) computes its columns of the previous state's gradient,
// dh_prev = dG W_hh (+ the direct paths), and the padding rows pass dh through unchanged.
// Small layers split the steps by batch rows instead, without barriers (as the forward).
// After the loop, dW_ih, dW_hh, dx and the bias gradients are one GEMM (or sum) each over
// all T*B rows.

#include <algorithm>
#include <vector>

#include "kernels/layer.h"
#include "kernels/barrier.h"
#include "kernels/interrupt.h"
#include "kernels/layer_plan.h"
#include "vec/lanes.h"

namespace pyrnn::PYRNN_ISA {
namespace {

template <typename T>
struct BackwardContext {
  const LayerDims& d;
  const LayerBackwardArgs<T>& a;
  index G, GH;
  UnitBlocks blocks;       // hidden units
  UnitBlocks out_blocks;   // columns of the state gradient (P)
  index ldG;               // row stride of dG: G*H, or more (gemm_row_stride)
  Workspace<const T> ws;
  T* dG;                   // (T, B, G*H) gate pre-activation gradients (input side), rows ldG apart
  T* dhn;                  // (T, B, H)   GRU: gradient of h W_hn^T + b_hn
  T* dh_proj;              // (T, B, P)   projected LSTM: gradient of each step's output h
  T* dgh;                  // (B, G*H)    GRU: this step's hidden-side gate gradients
  T* dhraw;                // (B, H)      projected LSTM: gradient of o*tanh(c); GRU-rb: d(r*h)
  T* direct;               // (B, H)      GRU: the z*dh path straight into dh_prev
  PackedB<T> w_rec;        // W_hh (G*H, P)   (GRU reset-before: rows of r and z only)
  PackedB<T> w_n;          // GRU reset-before: W_hn (H, H)
  PackedB<T> w_proj;       // W_hr (P, H)
  StepBarrier* barrier;    // the time loop's team
};

template <typename T>
struct BackStep {
  index t;
  const T* dh_in;          // (B, P) gradient of the state leaving step t (without dy)
  T* dh_out;               // (B, P) gradient of the state entering step t
  const T* dy;             // (B, P) or null
  T* dG;                   // (B, G*H) rows of step t, ldG apart
};

// ---- element-wise gate gradients: one row b, units [u0, u1), a register at a time ----

// A gradient row from unit u0: dh + dy (just dh without dy).
template <typename T>
struct OutputGrad {
  const T* dh;
  const T* dy;  // or null
  Vec<T> load(const Lanes<T>& l, index k) const {
    return dy ? l.load(dh + k) + l.load(dy + k) : l.load(dh + k);
  }
};

// Row b's gradient of the step's outputs from output unit p0: dh_in + dy.
template <typename T>
OutputGrad<T> step_output_grad(const BackStep<T>& s, index b, index P, index p0) {
  return {s.dh_in + b * P + p0, s.dy ? s.dy + b * P + p0 : nullptr};
}

// Row b's gradient of the cell's outputs from unit u0: the step's (above), or for the
// projected LSTM the gradient of o*tanh(c) computed before the row.
template <typename T>
OutputGrad<T> output_grad_row(const BackwardContext<T>& c, const BackStep<T>& s, index b, index u0) {
  if (c.d.has_proj) return {c.dhraw + b * c.d.H + u0, nullptr};
  return step_output_grad(s, b, c.d.P, u0);
}

template <typename T>
void rnn_row(const BackwardContext<T>& c, const BackStep<T>& s, index b, index u0, index u1) {
  using V = Vec<T>;
  const index H = c.d.H;
  const OutputGrad<T> out = output_grad_row(c, s, b, u0);
  const T* h = c.ws.gates + (s.t * c.d.B + b) * H + u0;
  T* dg = s.dG + b * c.ldG + u0;
  const bool tanh = c.d.cell == Cell::RnnTanh;
  const V one = V::broadcast(T(1)), zero = V::zero();
  for_lanes<T>(u1 - u0, [&](index k, Lanes<T> l) {
    const V dh = out.load(l, k), hv = l.load(h + k);
    l.store(tanh ? dh * (one - hv * hv) : select(less(zero, hv), dh, zero), dg + k);
  });
}

// dc (B, H) is the running cell-state gradient, updated in place to dc_prev. With peepholes
// (p_i, p_f, p_o) c_t also feeds o's pre-activation and c_{t-1} those of i and f.
template <typename T>
void lstm_row(const BackwardContext<T>& c, const BackStep<T>& s, index b, index u0, index u1, T* dc) {
  using V = Vec<T>;
  const index H = c.d.H, row = s.t * c.d.B + b;
  const OutputGrad<T> out = output_grad_row(c, s, b, u0);
  const T* gt = c.ws.gates + row * 4 * H + u0;  // i, f, g, o at + 0, H, 2H, 3H
  const T* c_prev = c.ws.cprev + row * H + u0;
  const T* tc = c.ws.tanhc + row * H + u0;
  const T* peep = c.a.w_peep ? c.a.w_peep + u0 : nullptr;  // p_i, p_f, p_o at + 0, H, 2H
  T* dg = s.dG + b * c.ldG + u0;
  T* dcb = dc + b * H + u0;
  const V one = V::broadcast(T(1));
  for_lanes<T>(u1 - u0, [&](index k, Lanes<T> l) {
    const V dh = out.load(l, k), t = l.load(tc + k);
    const V i = l.load(gt + k), f = l.load(gt + H + k), g = l.load(gt + 2 * H + k), o = l.load(gt + 3 * H + k);
    const V da_o = dh * t * o * (one - o);
    V dct = l.load(dcb + k) + dh * o * (one - t * t);
    if (peep) dct = fma(da_o, l.load(peep + 2 * H + k), dct);
    const V da_i = dct * g * i * (one - i), da_f = dct * l.load(c_prev + k) * f * (one - f);
    l.store(da_i, dg + k);
    l.store(da_f, dg + H + k);
    l.store(dct * i * (one - g * g), dg + 2 * H + k);
    l.store(da_o, dg + 3 * H + k);
    V dc_prev = dct * f;
    if (peep) dc_prev = fma(da_i, l.load(peep + k), fma(da_f, l.load(peep + H + k), dc_prev));
    l.store(dc_prev, dcb + k);
  });
}

// Peephole gradients over all T*B rows: dp_i += sum da_i c_{t-1}, dp_f += sum da_f c_{t-1},
// dp_o += sum da_o c_t, with c_t = f c_{t-1} + i g from the kept gates (padding rows have
// da = 0 and are skipped: their kept values are not the cell's).
template <typename T>
void add_peephole_grads(const LayerDims& d, const Workspace<const T>& ws, const T* dG, index ldG,
                        const std::int64_t* lengths, T* dw_peep) {
  const index H = d.H, TB = d.T * d.B;
  for (index row = 0; row < TB; ++row) {
    if (!step_valid(lengths, row % d.B, row / d.B)) continue;
    const T* gt = ws.gates + row * 4 * H;
    const T* da = dG + row * ldG;
    const T* cp = ws.cprev + row * H;
    for (index u = 0; u < H; ++u) {
      const T c_new = gt[H + u] * cp[u] + gt[u] * gt[2 * H + u];
      dw_peep[u] += da[u] * cp[u];
      dw_peep[H + u] += da[H + u] * cp[u];
      dw_peep[2 * H + u] += da[3 * H + u] * c_new;
    }
  }
}

// GRU, reset after the product: h' = n + z (h - n), n = tanh(x_n + r * hn), hn = h W_hn^T + b_hn.
template <typename T>
void gru_row(const BackwardContext<T>& c, const BackStep<T>& s, index b, index u0, index u1) {
  using V = Vec<T>;
  const index H = c.d.H, row = s.t * c.d.B + b;
  const OutputGrad<T> out = output_grad_row(c, s, b, u0);
  const T* gt = c.ws.gates + row * 3 * H + u0;  // r, z, n at + 0, H, 2H
  const T* hn = c.ws.hn_lin + row * H + u0;
  const T* h_prev = c.ws.hprev + row * H + u0;
  T* dg = s.dG + b * c.ldG + u0;
  T* dgh = c.dgh + b * 3 * H + u0;
  T* dhn = c.dhn + row * H + u0;
  T* direct = c.direct + b * H + u0;
  const V one = V::broadcast(T(1));
  for_lanes<T>(u1 - u0, [&](index k, Lanes<T> l) {
    const V dh = out.load(l, k);
    const V r = l.load(gt + k), z = l.load(gt + H + k), n = l.load(gt + 2 * H + k);
    const V dn = dh * (one - z) * (one - n * n);
    const V dz = dh * (l.load(h_prev + k) - n) * z * (one - z);
    const V dr = dn * l.load(hn + k) * r * (one - r);
    const V dn_r = dn * r;
    l.store(dr, dg + k);
    l.store(dr, dgh + k);
    l.store(dz, dg + H + k);
    l.store(dz, dgh + H + k);
    l.store(dn, dg + 2 * H + k);
    l.store(dn_r, dgh + 2 * H + k);
    l.store(dn_r, dhn + k);
    l.store(dh * z, direct + k);
  });
}

// GRU, reset before the product, first phase: the n and z gradients and the direct path.
template <typename T>
void gru_rb_row(const BackwardContext<T>& c, const BackStep<T>& s, index b, index u0, index u1) {
  using V = Vec<T>;
  const index H = c.d.H, row = s.t * c.d.B + b;
  const OutputGrad<T> out = output_grad_row(c, s, b, u0);
  const T* gt = c.ws.gates + row * 3 * H + u0;  // z, n at + H, 2H
  const T* h_prev = c.ws.hprev + row * H + u0;
  T* dg = s.dG + b * c.ldG + u0;
  T* direct = c.direct + b * H + u0;
  const V one = V::broadcast(T(1));
  for_lanes<T>(u1 - u0, [&](index k, Lanes<T> l) {
    const V dh = out.load(l, k), z = l.load(gt + H + k), n = l.load(gt + 2 * H + k);
    l.store(dh * (l.load(h_prev + k) - n) * z * (one - z), dg + H + k);
    l.store(dh * (one - z) * (one - n * n), dg + 2 * H + k);
    l.store(dh * z, direct + k);
  });
}

// Second phase, given d(r*h) of the row: the r gradient and r's share of the direct path.
template <typename T>
void gru_rb_reset_row(const BackwardContext<T>& c, const BackStep<T>& s, index b, index u0, index u1) {
  using V = Vec<T>;
  const index H = c.d.H, row = s.t * c.d.B + b;
  const T* r = c.ws.gates + row * 3 * H + u0;
  const T* h_prev = c.ws.hprev + row * H + u0;
  const T* drh = c.dhraw + b * H + u0;
  T* dg = s.dG + b * c.ldG + u0;
  T* direct = c.direct + b * H + u0;
  const V one = V::broadcast(T(1));
  for_lanes<T>(u1 - u0, [&](index k, Lanes<T> l) {
    const V d = l.load(drh + k), rv = l.load(r + k);
    l.store(d * l.load(h_prev + k) * rv * (one - rv), dg + k);
    l.store(l.load(direct + k) + d * rv, direct + k);
  });
}

template <typename T>
void run_step(BackwardContext<T>& c, const BackStep<T>& s, const Share& sh, T* dc) {
  const LayerDims& d = c.d;
  const index B = d.B, H = d.H, P = d.P, G = c.G, GH = c.GH;
  const std::int64_t* len = c.a.lengths;
  const index u_begin = c.blocks.begin(sh.blocks.begin), u_end = c.blocks.begin(sh.blocks.end);
  const index p_begin = c.out_blocks.begin(sh.out_blocks.begin);
  const index p_end = c.out_blocks.begin(sh.out_blocks.end);
  const index r0 = sh.rows.begin, r1 = sh.rows.end, nr = r1 - r0;  // the thread's batch rows

  if (d.has_proj) {
    // Gradient of this step's projected output, then of o*tanh(c) for own units.
    T* dh_step = c.dh_proj + s.t * B * P;
    for (index b = r0; b < r1; ++b) {
      T* row = dh_step + b * P + p_begin;
      if (!step_valid(len, b, s.t)) {
        std::fill(row, row + (p_end - p_begin), T(0));
        continue;
      }
      const OutputGrad<T> out = step_output_grad(s, b, P, p_begin);
      for_lanes<T>(p_end - p_begin, [&](index k, Lanes<T> l) { l.store(out.load(l, k), row + k); });
    }
    c.barrier->wait();
    if (u_end > u_begin)
      gemm_packed<T>(nr, u_begin, u_end, dh_step + r0 * P, P, c.w_proj, T(0), c.dhraw + r0 * H, H);
  }

  for (index b = r0; b < r1; ++b) {
    if (!step_valid(len, b, s.t)) {
      for (index g = 0; g < G; ++g)
        std::fill(s.dG + b * c.ldG + g * H + u_begin, s.dG + b * c.ldG + g * H + u_end, T(0));
      if (d.cell == Cell::Gru) {
        for (index g = 0; g < G; ++g)
          std::fill(c.dgh + b * c.GH + g * H + u_begin, c.dgh + b * c.GH + g * H + u_end, T(0));
        std::fill(c.dhn + (s.t * B + b) * H + u_begin, c.dhn + (s.t * B + b) * H + u_end, T(0));
      }
      continue;
    }
    switch (d.cell) {
      case Cell::RnnTanh:
      case Cell::RnnRelu: rnn_row(c, s, b, u_begin, u_end); break;
      case Cell::Lstm: lstm_row(c, s, b, u_begin, u_end, dc); break;
      case Cell::Gru: gru_row(c, s, b, u_begin, u_end); break;
      case Cell::GruResetBefore: gru_rb_row(c, s, b, u_begin, u_end); break;
    }
  }

  if (d.cell == Cell::GruResetBefore) {
    // d(r*h) = dn W_hn needs every unit's dn.
    c.barrier->wait();
    if (u_end > u_begin)
      gemm_packed<T>(nr, u_begin, u_end, s.dG + r0 * c.ldG + 2 * H, c.ldG, c.w_n, T(0), c.dhraw + r0 * H, H);
    for (index b = r0; b < r1; ++b)
      if (step_valid(len, b, s.t)) gru_rb_reset_row(c, s, b, u_begin, u_end);
  }

  // dh_prev = dG W_hh needs every unit's dG.
  c.barrier->wait();
  if (p_end > p_begin) {
    switch (d.cell) {
      case Cell::Gru:
        gemm_packed<T>(nr, p_begin, p_end, c.dgh + r0 * GH, GH, c.w_rec, T(0), s.dh_out + r0 * P, P);
        break;
      default:
        gemm_packed<T>(nr, p_begin, p_end, s.dG + r0 * c.ldG, c.ldG, c.w_rec, T(0), s.dh_out + r0 * P, P);
    }
  }
  const bool gru = d.cell == Cell::Gru || d.cell == Cell::GruResetBefore;
  for (index b = r0; b < r1; ++b) {
    T* out = s.dh_out + b * P;
    if (!step_valid(len, b, s.t)) {
      std::copy(s.dh_in + b * P + p_begin, s.dh_in + b * P + p_end, out + p_begin);
    } else if (gru) {
      for (index p = p_begin; p < p_end; ++p) out[p] += c.direct[b * H + p];
    }
  }
}

}  // namespace

template <typename T>
void layer_backward(const LayerDims& d, const LayerBackwardArgs<T>& a) {
  FlushDenormals ftz;
  const index B = d.B, H = d.H, P = d.P, TT = d.T, I = d.I;
  const bool lstm = d.cell == Cell::Lstm;
  if (TT == 0 || B == 0) {
    copy_or_zero(a.dh_n, a.dh0, B * P);
    if (lstm) copy_or_zero(a.dc_n, a.dc0, B * H);
    if (a.dx) std::fill(a.dx, a.dx + TT * B * I, T(0));
    return;
  }
  const index G = gate_count(d.cell), GH = G * H, TB = TT * B;
  const index width = unit_block_width<T>();
  BackwardContext<T> c{d, a, G, GH, UnitBlocks(H, width), UnitBlocks(P, width)};
  c.ws = carve_workspace(d, a.workspace);

  // Every buffer is allocated here, before the time loop.
  const bool gru = d.cell == Cell::Gru, gru_rb = d.cell == Cell::GruResetBefore;
  // dG and the per-call arrays are written in full by the loop (padding rows with zeros).
  c.ldG = gemm_row_stride<T>(GH);
  UninitBuffer<T> dG(static_cast<size_t>(TB * c.ldG));
  UninitBuffer<T> per_call(static_cast<size_t>((gru ? TB * H : 0) + (d.has_proj ? TB * P : 0)));
  std::vector<T> per_step(static_cast<size_t>(B * GH + 2 * B * H + 2 * B * P));
  c.dG = dG.data();
  c.dhn = gru ? per_call.data() : nullptr;
  c.dh_proj = d.has_proj ? per_call.data() + (gru ? TB * H : 0) : nullptr;
  c.dgh = per_step.data();
  c.dhraw = c.dgh + B * GH;
  c.direct = c.dhraw + B * H;
  T* dh_ping = c.direct + B * H;

  if (gru_rb) {
    pack_b<T>(false, 2 * H, P, a.w_hh, P, c.w_rec);
    pack_b<T>(false, H, H, a.w_hh + 2 * H * P, P, c.w_n);
  } else {
    pack_b<T>(false, GH, P, a.w_hh, P, c.w_rec);
  }
  if (d.has_proj) pack_b<T>(false, P, H, a.w_hr, H, c.w_proj);

  copy_or_zero(a.dh_n, dh_ping, B * P);
  if (lstm) copy_or_zero(a.dc_n, a.dc0, B * H);  // dc0 doubles as the running dc

  const double flops_per_step = 2.0 * B * GH * P + (d.has_proj ? 2.0 * B * H * P : 0.0);
  const LoopPlan plan = plan_loop(flops_per_step, TT, recurrent_weight_bytes<T>(d), B, std::min(c.blocks.count, c.out_blocks.count));
  StopSignal stop;
  run_team(plan.threads, plan.split, B, c.blocks.count, c.out_blocks.count, c.barrier, stop, [&](const Share& sh) {
    for (index s = 0; s < TT; ++s) {
      // Split by units every thread reads this after the same barrier; split by rows the
      // threads never wait for one another, so each may leave at its own step.
      if (stop.before(s)) break;
      const index t = d.reverse ? s : TT - 1 - s;
      BackStep<T> step{t,
                       dh_ping + (s % 2) * B * P,
                       s == TT - 1 ? a.dh0 : dh_ping + ((s + 1) % 2) * B * P,
                       a.dy ? a.dy + t * B * P : nullptr,
                       c.dG + t * B * c.ldG};
      run_step(c, step, sh, a.dc0);
      stop.poll(s);
      c.barrier->wait();
    }
  });
  if (stop.requested()) return;

  // Weight, bias and input gradients: one product over all T*B rows each.
  // Padding rows have zero gradients, but the inputs and states they carry may be NaN or Inf
  // (0 * Inf = NaN): the products see those rows zeroed.
  std::vector<T> x_valid, hprev_valid, hraw_valid;
  const T* x = valid_input_rows(a.x, TB, B, I, a.lengths, x_valid);
  const T* hprev = valid_input_rows(c.ws.hprev, TB, B, P, a.lengths, hprev_valid);
  if (a.dx) gemm<T>(false, false, TB, I, GH, c.dG, c.ldG, a.w_ih, I, T(0), a.dx, I);
  gemm<T>(true, false, GH, I, TB, c.dG, c.ldG, x, I, T(1), a.dw_ih, I);
  if (gru || gru_rb) {
    gemm<T>(true, false, 2 * H, P, TB, c.dG, c.ldG, hprev, P, T(1), a.dw_hh, P);
    if (gru) {
      gemm<T>(true, false, H, P, TB, c.dhn, H, hprev, P, T(1), a.dw_hh + 2 * H * P, P);
    } else {
      // dW_hn = dn^T (r*h); padding rows have dn = 0.
      std::vector<T> rh(static_cast<size_t>(TB * H));
      for (index row = 0; row < TB; ++row) {
        const bool valid = step_valid(a.lengths, row % B, row / B);
        for (index u = 0; u < H; ++u)
          rh[row * H + u] = valid ? c.ws.gates[row * GH + u] * hprev[row * H + u] : T(0);
      }
      gemm<T>(true, false, H, P, TB, c.dG + 2 * H, c.ldG, rh.data(), H, T(1), a.dw_hh + 2 * H * P, P);
    }
  } else {
    gemm<T>(true, false, GH, P, TB, c.dG, c.ldG, hprev, P, T(1), a.dw_hh, P);
  }
  if (d.has_proj) {
    const T* hraw = valid_input_rows(c.ws.hraw, TB, B, H, a.lengths, hraw_valid);
    gemm<T>(true, false, P, H, TB, c.dh_proj, P, hraw, H, T(1), a.dw_hr, H);
  }
  if (d.has_peep) add_peephole_grads(d, c.ws, c.dG, c.ldG, a.lengths, a.dw_peep);
  if (d.has_bias) {
    add_column_sums(a.db_ih, c.dG, TB, GH, c.ldG);
    if (gru) {
      add_column_sums(a.db_hh, c.dG, TB, 2 * H, c.ldG);
      add_column_sums(a.db_hh + 2 * H, c.dhn, TB, H, H);
    } else {
      add_column_sums(a.db_hh, c.dG, TB, GH, c.ldG);
    }
  }
}

template void layer_backward<float>(const LayerDims&, const LayerBackwardArgs<float>&);
template void layer_backward<double>(const LayerDims&, const LayerBackwardArgs<double>&);

}  // namespace pyrnn::PYRNN_ISA
