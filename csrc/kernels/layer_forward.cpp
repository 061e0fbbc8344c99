// Forward pass of one layer in one direction over a whole sequence.
//
// 1. The input projection of every step is one GEMM: xg (T*B, G*H) = x W_ih^T (the folded
//    bias is added in the cell math, saving a pass over xg). Inference on cached panels runs
//    it inside the time loop's team, on the cached W_ih panels, in their gate-blocked order,
//    one chunk of steps (up to 16 MB) at a time.
// 2. One OpenMP parallel region runs the time loop. Each thread owns blocks of hidden units;
//    per step it multiplies the state by its gate-blocked slice of W_hh (all gates of its
//    units at once), then immediately applies bias, activations and the state update while
//    that block is in cache (state is double-buffered). Steps are shared from a counter, so
//    that the other threads take over the blocks of a descheduled one (step_tickets.h); the
//    cells with a phase that needs every unit (projection, reset-before GRU) run fixed shares
//    with a barrier per phase instead. Small layers split by batch rows and need neither
//    (layer_plan.h: plan_loop).
// 3. Training keeps a compact workspace (layer_plan.h) for BPTT; inference keeps nothing.

#include <algorithm>
#include <vector>

#include "kernels/layer.h"
#include "kernels/barrier.h"
#include "kernels/interrupt.h"
#include "kernels/layer_plan.h"
#include "kernels/step_tickets.h"

#include "kernels/forward_rows.h"

namespace pyrnn::PYRNN_ISA {
namespace {

// Padding row: the state carries through, the output is zero.
template <typename T>
void carry_row(const Step<T>& s, index b, index width, index c0, index c1) {
  std::copy(s.h_in + b * width + c0, s.h_in + b * width + c1, s.h_out + b * width + c0);
  if (s.y) std::fill(s.y + b * width + c0, s.y + b * width + c1, T(0));
}

// ---- the products of a step, on packed panels ----

// The products below cover the calling thread's rows [r.begin, r.end) of the batch.

// hg (B, Gr*H), gate-blocked columns of the calling thread's units: h W_hh^T.
template <typename T>
void recurrent_product(const ForwardContext<T>& c, const T* h_in, index Gr, const Share& sh) {
  const index u_begin = c.blocks.begin(sh.blocks.begin), u_end = c.blocks.begin(sh.blocks.end);
  const index r0 = sh.rows.begin, ld = Gr * c.d.H;
  gemm_packed<T>(sh.rows.end - r0, Gr * u_begin, Gr * u_end, h_in + r0 * c.d.P, c.d.P,
                 c.packed->w_rec, T(0), c.hg + r0 * ld, ld);
}

// GRU reset-before: hn (B, H) columns [u_begin, u_end) = (r*h) W_hn^T.
template <typename T>
void reset_product(const ForwardContext<T>& c, Range r, index u_begin, index u_end, T* hn) {
  const index H = c.d.H;
  gemm_packed<T>(r.end - r.begin, u_begin, u_end, c.scratch + r.begin * H, H, c.packed->w_rec_n,
                 T(0), hn + r.begin * H, H);
}

// xg (steps*B, G*H), gate-blocked as the cached W_ih panels: x W_ih^T, the columns of the
// calling thread's input blocks for every row.
template <typename T>
void input_product(const ForwardContext<T>& c, const T* x, index steps, const Share& sh, T* xg) {
  const index u_begin = c.blocks.begin(sh.input_blocks.begin), u_end = c.blocks.begin(sh.input_blocks.end);
  gemm_packed<T>(steps * c.d.B, c.G * u_begin, c.G * u_end, x, c.d.I, c.packed->w_in, T(0), xg, c.GH);
}

// Projected LSTM: h_out (B, P) columns [p0, p1) = hraw W_hr^T.
template <typename T>
void projection_product(const ForwardContext<T>& c, Range r, index p0, index p1, T* h_out) {
  const index H = c.d.H, P = c.d.P;
  gemm_packed<T>(r.end - r.begin, p0, p1, c.hraw + r.begin * H, H, c.packed->w_proj, T(0),
                 h_out + r.begin * P, P);
}

// ---- one step for the calling thread's share ----

template <typename T>
void run_step(ForwardContext<T>& c, const Step<T>& s, const Share& sh) {
  const LayerDims& d = c.d;
  const index B = d.B, H = d.H;
  const auto& blk = c.blocks;
  const std::int64_t* len = c.a.lengths;
  const Range mine = sh.blocks, rows = sh.rows;
  const index u_begin = blk.begin(mine.begin), u_end = blk.begin(mine.end);
  const index Gr = d.cell == Cell::GruResetBefore ? 2 : c.G;  // gates in the first product

  recurrent_product(c, s.h_in, Gr, sh);

  // Row by row: each gate's input projection is then read as one contiguous run per row,
  // which the hardware prefetcher follows (block by block would stride over rows). The cell
  // math of a row's blocks is one loop, so that out-of-order execution overlaps the long
  // latency chains (exp, division) of consecutive vectors.
  for (index b = rows.begin; b < rows.end; ++b) {
    if (!step_valid(len, b, s.t)) {
      if (d.cell == Cell::Lstm) {
        std::copy(s.c_in + b * H + u_begin, s.c_in + b * H + u_end, s.c_out + b * H + u_begin);
        if (d.has_proj) std::fill(c.hraw + b * H + u_begin, c.hraw + b * H + u_end, T(0));
        else carry_row(s, b, H, u_begin, u_end);
      } else if (d.cell == Cell::GruResetBefore) {
        std::fill(c.scratch + b * H + u_begin, c.scratch + b * H + u_end, T(0));  // r*h
      } else {
        carry_row(s, b, H, u_begin, u_end);
      }
      continue;
    }
    if (b + 1 < rows.end) {
      // The input projection was written long before this step and a row's part of it is
      // short runs (one per gate, or one gate-blocked run) that the hardware prefetcher picks
      // up late: fetch the next row's now.
      constexpr index kLine = 64 / sizeof(T);
      const T* next = s.xg + (b + 1) * c.GH;
      if (s.xg_blocked) {
        for (index k = c.G * u_begin; k < c.G * u_end; k += kLine) __builtin_prefetch(next + k);
      } else {
        for (index g = 0; g < c.G; ++g)
          for (index u = u_begin; u < u_end; u += kLine) __builtin_prefetch(next + g * H + u);
      }
    }
    T* z_row = c.hg + b * Gr * H;
    auto each_block = [&](auto row) {
      for (index j = mine.begin; j < mine.end; ++j) {
        const index u0 = blk.begin(j);
        row(u0, blk.end(j) - u0, z_row + Gr * u0);
      }
    };
    switch (d.cell) {
      case Cell::RnnTanh:
      case Cell::RnnRelu: each_block([&](index u0, index n, T* z) { rnn_row(c, s, b, u0, n, z); }); break;
      case Cell::Lstm:
        if (c.peep) each_block([&](index u0, index n, T* z) { lstm_row<true>(c, s, b, u0, n, z); });
        else each_block([&](index u0, index n, T* z) { lstm_row<false>(c, s, b, u0, n, z); });
        break;
      case Cell::Gru: each_block([&](index u0, index n, T* z) { gru_row(c, s, b, u0, n, z); }); break;
      case Cell::GruResetBefore:
        each_block([&](index u0, index n, T* z) { gru_rb_gates_row(c, s, b, u0, n, z); });
        break;
    }
  }

  if (d.cell == Cell::GruResetBefore) {
    // n needs r*h of every unit: wait for all threads, then multiply by W_hn.
    c.barrier->wait();
    T* hn = c.hraw;  // (B, H) reused as the n-gate buffer
    reset_product(c, rows, u_begin, u_end, hn);
    for (index b = rows.begin; b < rows.end; ++b) {
      for (index j = mine.begin; j < mine.end; ++j) {
        const index u0 = blk.begin(j), n = blk.end(j) - u0;
        if (!step_valid(len, b, s.t)) {
          carry_row(s, b, H, u0, u0 + n);
          continue;
        }
        gru_rb_state_row(c, s, b, u0, n, c.hg + b * 2 * H + 2 * u0, hn + b * H + u0);
      }
    }
  }

  if (d.has_proj) {
    // h = (o * tanh c) W_hr^T needs every unit of the step: wait, then project own columns.
    c.barrier->wait();
    const index p0 = c.out_blocks.begin(sh.out_blocks.begin), p1 = c.out_blocks.begin(sh.out_blocks.end);
    projection_product(c, rows, p0, p1, s.h_out);
    for (index b = rows.begin; b < rows.end; ++b) {
      if (!step_valid(len, b, s.t)) {
        carry_row(s, b, d.P, p0, p1);
      } else {
        if (s.y && s.y != s.h_out) std::copy(s.h_out + b * d.P + p0, s.h_out + b * d.P + p1, s.y + b * d.P + p0);
      }
    }
    if (c.ws.hraw)
      for (index j = mine.begin; j < mine.end; ++j) {
        const index u0 = blk.begin(j), u1 = blk.end(j);
        for (index b = rows.begin; b < rows.end; ++b)
          std::copy(c.hraw + b * H + u0, c.hraw + b * H + u1, c.ws.hraw + (s.t * B + b) * H + u0);
      }
  }
}

// (G*H) the bias added to the input projection (see packed_layer.h), zeros without biases.
template <typename T>
void fold_bias(const LayerDims& d, const LayerForwardArgs<T>& a, AlignedVector<T>& out) {
  out.resize(static_cast<size_t>(gate_count(d.cell) * d.H));
  for (index k = 0; k < static_cast<index>(out.size()); ++k) out[k] = folded_bias(d, a, k);
}

// The panels a forward call multiplies with; with `for_steps` also the input weights and the
// folded bias, which a step's input product uses.
template <typename T>
void pack_weights(const LayerDims& d, const LayerForwardArgs<T>& a, bool for_steps,
                  PackedLayerWeights<T>& out) {
  const index H = d.H, P = d.P, G = gate_count(d.cell);
  const UnitBlocks blocks(H, unit_block_width<T>());
  if (d.cell == Cell::GruResetBefore) {
    pack_gate_blocked(a.w_hh, 2, blocks, P, out.w_rec);
    pack_b<T>(true, P, H, a.w_hh + 2 * H * P, P, out.w_rec_n);
  } else {
    pack_gate_blocked(a.w_hh, G, blocks, P, out.w_rec);
  }
  if (d.has_proj) pack_b<T>(true, H, P, a.w_hr, H, out.w_proj);
  if (d.has_peep) out.peep.assign(a.w_peep, a.w_peep + 3 * H);
  if (for_steps) {
    pack_gate_blocked(a.w_ih, G, blocks, d.I, out.w_in);
    fold_bias(d, a, out.bias);
    if (d.has_bias) out.b_hh.assign(a.b_hh, a.b_hh + G * H);
  }
}

}  // namespace

index training_workspace_size(const LayerDims& dims) { return workspace_layout(dims).total; }

template <typename T>
void layer_forward(const LayerDims& d, const LayerForwardArgs<T>& a) {
  FlushDenormals ftz;
  const index B = d.B, H = d.H, P = d.P, TT = d.T;
  const bool lstm = d.cell == Cell::Lstm;
  if (TT == 0 || B == 0) {
    std::copy(a.h0, a.h0 + B * P, a.h_n);
    if (lstm) std::copy(a.c0, a.c0 + B * H, a.c_n);
    return;
  }
  const index G = gate_count(d.cell), GH = G * H, TB = TT * B;
  const index width = unit_block_width<T>();
  ForwardContext<T> c{d, a, G, GH, UnitBlocks(H, width), UnitBlocks(P, width)};

  // Inference on cached panels multiplies x with the cached gate-blocked W_ih^T inside the
  // time loop's team (no packing of W_ih or x per call, no extra fork), each thread the
  // columns of its share of the units for every row, a chunk of steps at a time
  // (layer_plan.h: input_chunk_steps), so that inference memory stops growing with T.
  // Training keeps xg for every step in PyTorch's gate order in the workspace (BPTT reads the
  // activated gates that overwrite it) and fills it with one parallel GEMM.
  const bool project_in_team = a.packed != nullptr && a.workspace == nullptr;
  const index chunk_steps = project_in_team ? input_chunk_steps<T>(TT, B * GH) : 0;

  // Every buffer is in place before the time loop: the calling thread's scratch, kept between
  // calls (a steady stream of calls touches no fresh memory), and the training workspace.
  // Steps of input projection the scratch holds: a chunk when projected in team, every step
  // for inference on unpacked weights, none in training (the workspace holds them).
  const index xg_steps = project_in_team ? chunk_steps : (a.workspace ? 0 : TT);
  const index state_buffers = a.workspace ? 0 : 2 * B * P;
  T* const scratch = thread_scratch<T>(Scratch::TimeLoop,
                                       xg_steps * B * GH + B * GH + 2 * B * H + state_buffers);
  T* xg = scratch;  // (xg_steps, B, G*H)
  if (a.workspace) {
    c.ws = carve_workspace(d, a.workspace);
    xg = c.ws.gates;
  }
  c.hg = scratch + xg_steps * B * GH;
  c.hraw = c.hg + B * GH;
  c.scratch = c.hraw + B * H;
  T* ping = c.scratch + B * H;

  // Cached panels from pack_layer when the caller has them, else packed for this call.
  PackedLayerWeights<T> own;
  AlignedVector<T> bias;
  if (a.packed) {
    c.packed = static_cast<const PackedLayerWeights<T>*>(a.packed);
    c.bias = c.packed->bias.data();
  } else {
    pack_weights(d, a, false, own);
    c.packed = &own;
    fold_bias(d, a, bias);
    c.bias = bias.data();
  }
  c.peep = d.has_peep ? c.packed->peep.data() : nullptr;
  if (!project_in_team) gemm<T>(false, true, TB, GH, d.I, a.x, d.I, a.w_ih, d.I, T(0), xg, GH);

  // State slots: training writes the state entering step t into ws.hprev[t] (so BPTT has
  // it) and the final one into h_n; inference ping-pongs between two buffers.
  auto h_slot_in = [&](index s, index t) -> const T* {
    if (c.ws.hprev) return c.ws.hprev + t * B * P;
    return s == 0 ? a.h0 : ping + (s % 2) * B * P;
  };
  auto h_slot_out = [&](index s, index t) -> T* {
    if (s == TT - 1) return a.h_n;
    const index t_next = d.reverse ? t - 1 : t + 1;
    if (c.ws.hprev) return c.ws.hprev + t_next * B * P;
    return ping + ((s + 1) % 2) * B * P;
  };
  auto c_slot_in = [&](index t) -> const T* {
    return c.ws.cprev ? c.ws.cprev + t * B * H : a.c_n;
  };
  auto c_slot_out = [&](index s, index t) -> T* {
    if (!c.ws.cprev || s == TT - 1) return a.c_n;
    return c.ws.cprev + (d.reverse ? t - 1 : t + 1) * B * H;
  };
  const index t_first = d.reverse ? TT - 1 : 0;
  if (c.ws.hprev) std::copy(a.h0, a.h0 + B * P, c.ws.hprev + t_first * B * P);
  if (lstm) std::copy(a.c0, a.c0 + B * H, c.ws.cprev ? c.ws.cprev + t_first * B * H : a.c_n);

  const double flops_per_step = 2.0 * B * GH * P + (d.has_proj ? 2.0 * B * H * P : 0.0);
  const LoopPlan plan = plan_loop(flops_per_step, TT, recurrent_weight_bytes<T>(d), B, c.blocks.count);
  StopSignal stop;
  auto step_at = [&](index s, index chunk_first) {
    const index t = d.reverse ? TT - 1 - s : s;
    return Step<T>{t,
                   h_slot_in(s, t),
                   h_slot_out(s, t),
                   lstm ? c_slot_in(t) : nullptr,
                   lstm ? c_slot_out(s, t) : nullptr,
                   xg + (t - chunk_first) * B * GH,
                   a.y ? a.y + t * B * P : nullptr,
                   project_in_team};
  };
  // Split by units, a step with no phase that needs every unit (the reset-before GRU's
  // second product, the projection) is shared from a counter (step_tickets.h), a few items
  // per thread per step; its chunk's input product is part of each item at a chunk's first step.
  const bool ticketed = plan.threads > 1 && plan.split == Split::Units && !d.has_proj &&
                        d.cell != Cell::GruResetBefore;
  if (ticketed) {
    StepTickets tickets(TT, std::min<index>(c.blocks.count, 4 * plan.threads), plan.threads);
    run_team(plan.threads, plan.split, B, c.blocks.count, c.out_blocks.count, c.barrier, stop, [&](const Share&) {
      tickets.run(omp_get_thread_num(), stop, [&](index s, index j) {
        const Range group = thread_share(c.blocks.count, int(j), int(tickets.items()));
        const Share item{{0, B}, group, {0, 0}, group, nullptr};
        index chunk_first = 0;  // projected in team: the real time of the chunk's first row
        if (project_in_team) {
          const index s0 = s / chunk_steps * chunk_steps, n = std::min(chunk_steps, TT - s0);
          chunk_first = d.reverse ? TT - s0 - n : s0;
          if (s == s0) input_product(c, a.x + chunk_first * B * d.I, n, item, xg);
        }
        run_step(c, step_at(s, chunk_first), item);
      });
    });
    return;
  }
  run_team(plan.threads, plan.split, B, c.blocks.count, c.out_blocks.count, c.barrier, stop, [&](const Share& sh) {
    index chunk_first = 0;  // projected in team: the real time of the chunk's first row
    for (index s = 0; s < TT; ++s) {
      // Split by units, every thread reads the stop after the same barrier and all leave
      // together. Split by rows, each may see it at another step: it skips the work and still
      // meets the others around the chunks' input products.
      const bool stopping = stop.before(s);
      if (stopping && plan.split == Split::Units) break;
      const index t = d.reverse ? TT - 1 - s : s;
      if (project_in_team && s % chunk_steps == 0) {
        // Split by units, a thread reads only the columns it computes here. Split by rows, it
        // reads every column of its rows, so the threads wait for each other before the chunk
        // is overwritten and after it is written: a thread's rows alone, step by step, would be
        // products of a few rows, a short strip of tiles for every few.
        const index n = std::min(chunk_steps, TT - s);
        chunk_first = d.reverse ? t - n + 1 : t;
        const bool shared = plan.split == Split::Rows;
        if (shared && s > 0) sh.team->wait();
        if (!stopping) input_product(c, a.x + chunk_first * B * d.I, n, sh, xg);
        if (shared) sh.team->wait();
      }
      if (stopping) continue;
      run_step(c, step_at(s, chunk_first), sh);
      stop.poll(s);
      c.barrier->wait();
    }
  });
}

template <typename T>
PackedLayer* pack_layer(const LayerDims& d, const LayerForwardArgs<T>& a) {
  auto* out = new PackedLayerWeights<T>();
  out->isa = PYRNN_ISA_NAME;
  out->dims = d;
  out->f64 = std::is_same_v<T, double>;
  pack_weights(d, a, true, *out);
  return out;
}

// One step (dims.T == 1) for streaming inference on the weights of pack_layer: no workspace,
// no lengths. Each thread computes the input and recurrent products of its own units from
// their panels (a batch-1 step streams every weight once, the thread's slice from its own
// cache), then runs the same step as layer_forward: results equal the full forward's bitwise.
template <typename T>
void layer_step(const LayerDims& d, const LayerForwardArgs<T>& a) {
  FlushDenormals ftz;
  const index B = d.B, H = d.H, P = d.P, I = d.I;
  const bool lstm = d.cell == Cell::Lstm;
  if (lstm) std::copy(a.c0, a.c0 + B * H, a.c_n);  // updated in place
  if (B == 0) return;
  const index G = gate_count(d.cell), GH = G * H;
  const index width = unit_block_width<T>();
  const auto& packed = *static_cast<const PackedLayerWeights<T>*>(a.packed);
  LayerForwardArgs<T> args = a;
  args.b_hh = d.has_bias ? packed.b_hh.data() : nullptr;  // the only natural weight a step reads
  ForwardContext<T> c{d, args, G, GH, UnitBlocks(H, width), UnitBlocks(P, width)};
  c.packed = &packed;
  // (B, G*H) input projection, gate-blocked as the panels, then the step's buffers
  T* xin = thread_scratch<T>(Scratch::TimeLoop, 2 * B * GH + 2 * B * H);
  c.hg = xin + B * GH;
  c.hraw = c.hg + B * GH;
  c.scratch = c.hraw + B * H;
  c.bias = packed.bias.data();
  c.peep = d.has_peep ? packed.peep.data() : nullptr;

  const double flops = 2.0 * B * GH * (I + P) + (d.has_proj ? 2.0 * B * H * P : 0.0);
  const int nt = loop_threads(flops, B, c.blocks.count);
  StopSignal stop;  // a step is microseconds: never stopped part way
  run_team(nt, Split::Units, B, c.blocks.count, c.out_blocks.count, c.barrier, stop, [&](const Share& sh) {
    input_product(c, a.x, 1, sh, xin);
    Step<T> step{0, a.h0, a.h_n, lstm ? a.c_n : nullptr, lstm ? a.c_n : nullptr, xin, a.y, true};
    run_step(c, step, sh);
  });
}

template void layer_forward<float>(const LayerDims&, const LayerForwardArgs<float>&);
template void layer_forward<double>(const LayerDims&, const LayerForwardArgs<double>&);
template void layer_step<float>(const LayerDims&, const LayerForwardArgs<float>&);
template void layer_step<double>(const LayerDims&, const LayerForwardArgs<double>&);
template PackedLayer* pack_layer<float>(const LayerDims&, const LayerForwardArgs<float>&);
template PackedLayer* pack_layer<double>(const LayerDims&, const LayerForwardArgs<double>&);

}  // namespace pyrnn::PYRNN_ISA
