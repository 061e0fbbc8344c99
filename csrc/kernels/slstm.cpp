// sLSTM layer (scalar memory, exponential gating, memory mixing within heads): forward and
// BPTT over a whole sequence. Maths: pyrnn/reference_xlstm.py.
//
// 1. The recurrent matrix is block-diagonal over heads, so heads never exchange state: the
//    time loop runs in one OpenMP parallel region where each thread owns whole (head, batch
//    block) items for all T steps -- no barrier at all.
// 2. Per step an item multiplies its rows of x by its head's packed input panel (the 4 gates'
//    rows of W_ih) and adds its rows of h times the head's packed (DH, 4DH) recurrent panel,
//    then applies the gate math (Vec<T>) while the block is in cache: an item's products are
//    too small to gain from one big input GEMM over all steps, which would only add a pass
//    over a (T*B, 4H) buffer.
// 3. Training keeps a compact workspace (activated gates and the states entering each step);
//    BPTT runs per item in reverse with the same ownership, then dx, dW_ih, dW_hh and the
//    bias gradient are one GEMM (or sum) each over all T*B rows.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/interrupt.h"
#include "kernels/layer_plan.h"
#include "kernels/xlstm.h"
#include "kernels/xlstm_math.h"
#include "vec/lanes.h"

namespace pyrnn::PYRNN_ISA {
namespace {

// Training workspace, every array (T, B, X): gates holds the activated gates i', f', tanh(z~),
// sigmoid(o~) of each step (natural order); the rest is per unit.
template <typename T>
struct SlstmWorkspace {
  T *gates, *hprev, *cprev, *nprev, *sfn, *gap;  // sfn: d log f / d f~; gap: i~ - (log f + m')
};

template <typename T>
SlstmWorkspace<T> carve(const SlstmDims& d, T* base) {
  const index TBH = d.T * d.B * d.H;
  SlstmWorkspace<T> w;
  w.gates = base;
  w.hprev = base + 4 * TBH;
  w.cprev = w.hprev + TBH;
  w.nprev = w.cprev + TBH;
  w.sfn = w.nprev + TBH;
  w.gap = w.sfn + TBH;
  return w;
}

// Items: (head, batch block) pairs; a thread owns whole items for the whole call.
struct Items {
  index NH, nb, B;
  explicit Items(index NH_, index B_) : NH(NH_), B(B_) {
    const index want = (num_threads() + NH_ - 1) / NH_;
    nb = std::max<index>(1, std::min(B_, want));
  }
  index count() const { return NH * nb; }
  index head(index it) const { return it % NH; }
  index b0(index it) const { return B * (it / NH) / nb; }
  index b1(index it) const { return B * (it / NH + 1) / nb; }
};

// Head h's block of w_hh as a contiguous (4DH, DH) matrix, row g*DH + j.
template <typename T>
void head_block(const T* w_hh, index H, index DH, index h, T* out) {
  for (index g = 0; g < 4; ++g)
    for (index j = 0; j < DH; ++j)
      std::copy(w_hh + (g * H + h * DH + j) * DH, w_hh + (g * H + h * DH + j + 1) * DH,
                out + (g * DH + j) * DH);
}

// Gate math of one (row, head): DH units. raw_r: input + recurrent products (4DH, gate-blocked);
// bias: the head's gate biases (natural order, gate q at + q*H) or null; gates_out (training):
// where the activated gates go, natural order at the head's offset.
template <typename T>
void forward_units(const SlstmDims& d, index DH, const T* raw_r, const T* bias, T* gates_out, T* h, T* c,
                   T* n, T* m, T* y, T* sfn_out, T* gap_out, bool training) {
  using V = Vec<T>;
  const index H = d.H;
  const V tiny = V::broadcast(std::numeric_limits<T>::min());
  const V ninf = V::broadcast(neg_inf<T>());
  for_lanes<T>(DH, [&](index j, Lanes<T> l) PYRNN_INLINE_LAMBDA {
    auto ld = [l](const T* p) { return l.load(p); };
    auto st = [l](V v, T* p) { l.store(v, p); };
    auto pre = [&](int q) { return bias ? ld(raw_r + q * DH + j) + ld(bias + q * H + j) : ld(raw_r + q * DH + j); };
    const V ri = pre(0), rf = pre(1), rz = pre(2), ro = pre(3);
    const V np = ld(n + j), cp = ld(c + j), mp_in = ld(m + j);
    const V logf = d.forget_exp ? rf : logsigmoid_v(rf);
    const auto reset = less(abs(np), tiny);  // an empty memory: its stabiliser is ignored
    const V av = select(reset, ninf, mp_in) + logf;
    const V mn = max(av, ri);
    const V ip = exp_v(ri - mn);
    const V fp = select(reset, V::zero(), exp_v(av - mn));
    const V z = tanh_v(rz), o = sigmoid_v(ro);
    const V cn = fma(fp, cp, ip * z);
    const V nn = fp * np + ip;
    const V hn = o * cn / nn;
    st(hn, h + j);
    st(hn, y + j);
    st(cn, c + j);
    st(nn, n + j);
    st(mn, m + j);
    if (training) {
      st(ip, gates_out + j);
      st(fp, gates_out + H + j);
      st(z, gates_out + 2 * H + j);
      st(o, gates_out + 3 * H + j);
      st(d.forget_exp ? V::broadcast(T(1)) : sigmoid_v(-rf), sfn_out + j);
      st(ri - av, gap_out + j);
    }
  });
}

// BPTT through one (row, head) step: DH units. gates: the step's activated gates (natural
// order, gate q at + q*H); cprev, nprev, gap, sfn: the forward's per-unit records; dy (or
// null) and the running state gradients dh, dc, dn, dm (updated in place to the previous
// step's); g (4DH, gate-blocked) and gd (natural order) receive the pre-activation gradients.
template <typename T>
void backward_units(index DH, index H, const T* gates, const T* cprev, const T* nprev, const T* gap,
                    const T* sfn, const T* dy, T* dh, T* dc, T* dn, T* dm, T* g, T* gd) {
  using V = Vec<T>;
  const V one = V::broadcast(T(1)), zero = V::zero();
  const V tiny = V::broadcast(std::numeric_limits<T>::min());
  for (index j = 0; j < DH; j += V::width) {
    const Lanes<T> l{static_cast<int>(std::min<index>(V::width, DH - j))};
    auto ld = [l, j](const T* p) { return l.load(p + j); };
    auto st = [l, j](V v, T* p) { l.store(v, p + j); };
    const V ip = ld(gates), fp = ld(gates + H), z = ld(gates + 2 * H), o = ld(gates + 3 * H);
    const V cp = ld(cprev), np = ld(nprev);
    const V cn = fp * cp + ip * z, nn = fp * np + ip, inv_n = one / nn;
    const V dht = dy ? ld(dh) + ld(dy) : ld(dh);
    const V dog = dht * cn * inv_n * o * (one - o);
    const V dct = ld(dc) + dht * o * inv_n;
    const V dnt = ld(dn) - dht * o * cn * inv_n * inv_n;
    const V dzg = dct * ip * (one - z * z);
    const V dip = dct * z + dnt, dfp = dct * cp + dnt * np;
    const V dmt = ld(dm) - dip * ip - dfp * fp;
    // m = max(log f + m', i~): its gradient goes to i~ where that won (gap >= 0), else to log f.
    const auto to_f = less(ld(gap), zero);
    const V dig = dip * ip + select(to_f, zero, dmt);
    const V da = dfp * fp + select(to_f, dmt, zero);
    const V dfg = da * ld(sfn);
    st(dct * fp, dc);
    st(dnt * fp, dn);
    st(select(less(abs(np), tiny), zero, da), dm);  // an empty memory's stabiliser was ignored
    st(dig, g);
    st(dfg, g + DH);
    st(dzg, g + 2 * DH);
    st(dog, g + 3 * DH);
    st(dig, gd);
    st(dfg, gd + H);
    st(dzg, gd + 2 * H);
    st(dog, gd + 3 * H);
  }
}

}  // namespace

index slstm_workspace_size(const SlstmDims& d) { return 9 * d.T * d.B * d.H; }

template <typename T>
void slstm_forward(const SlstmDims& d, const SlstmForwardArgs<T>& a) {
  FlushDenormals ftz;
  const index TT = d.T, B = d.B, H = d.H, NH = d.NH, DH = H / NH, G4 = 4 * H, TB = TT * B;
  std::copy(a.h0, a.h0 + B * H, a.h_n);
  std::copy(a.c0, a.c0 + B * H, a.c_n);
  std::copy(a.n0, a.n0 + B * H, a.n_n);
  std::copy(a.m0, a.m0 + B * H, a.m_n);
  if (TT == 0 || B == 0) return;
  const bool training = a.workspace != nullptr;
  SlstmWorkspace<T> ws{};
  if (training) ws = carve(d, a.workspace);

  // Per head: its recurrent block and its 4DH rows of W_ih as panels, gate-blocked alike.
  const index DI = d.in_cols(), x_head_offset = d.headwise_input ? DI : 0;
  std::vector<PackedB<T>> panels(static_cast<size_t>(NH)), in_panels(static_cast<size_t>(NH));
  {
    std::vector<T> block(static_cast<size_t>(4 * DH * DH));
    std::vector<const T*> rows(static_cast<size_t>(4 * DH));
    for (index h = 0; h < NH; ++h) {
      head_block(a.w_hh, H, DH, h, block.data());
      pack_b<T>(true, DH, 4 * DH, block.data(), DH, panels[h]);
      for (index g = 0; g < 4; ++g)
        for (index j = 0; j < DH; ++j) rows[g * DH + j] = a.w_ih + (g * H + h * DH + j) * DI;
      pack_b_rows<T>(DI, 4 * DH, rows.data(), in_panels[h]);
    }
  }
  const Items items(NH, B);
  const int nt = static_cast<int>(std::min<index>(num_threads(), items.count()));
  if (nt > 1) note_split(SplitKind::XlstmItems);
  StopSignal stop;  // the threads never wait for one another: each leaves when it sees a stop
  TeamExit exit;
#pragma omp parallel num_threads(nt)
  {
    FlushDenormals ftz_thread;
    std::vector<T> hg(static_cast<size_t>((B / items.nb + 1) * 4 * DH));
#pragma omp for schedule(static) nowait
    for (index it = 0; it < items.count(); ++it) {
      const index hd = items.head(it), b0 = items.b0(it), b1 = items.b1(it), off = hd * DH;
      for (index t = 0; t < TT && !stop.requested(); stop.poll(t++)) {
        gemm_packed<T>(b1 - b0, 0, 4 * DH, a.x + (t * B + b0) * d.I + hd * x_head_offset, d.I, in_panels[hd],
                       T(0), hg.data(), 4 * DH);
        gemm_packed<T>(b1 - b0, 0, 4 * DH, a.h_n + b0 * H + off, H, panels[hd], T(1), hg.data(), 4 * DH);
        for (index b = b0; b < b1; ++b) {
          const index row = t * B + b, u = b * H + off;
          T* y = a.y + row * H + off;
          if (training) {
            std::copy(a.h_n + u, a.h_n + u + DH, ws.hprev + row * H + off);
            std::copy(a.c_n + u, a.c_n + u + DH, ws.cprev + row * H + off);
            std::copy(a.n_n + u, a.n_n + u + DH, ws.nprev + row * H + off);
          }
          if (!step_valid(a.lengths, b, t)) {
            std::fill(y, y + DH, T(0));
            continue;
          }
          forward_units(d, DH, hg.data() + (b - b0) * 4 * DH, a.bias ? a.bias + off : nullptr,
                        training ? ws.gates + row * G4 + off : nullptr, a.h_n + u,
                        a.c_n + u, a.n_n + u, a.m_n + u, y,
                        training ? ws.sfn + row * H + off : nullptr,
                        training ? ws.gap + row * H + off : nullptr, training);
        }
      }
    }
    exit.leave(omp_get_num_threads(), stop);
  }
}

template <typename T>
void slstm_backward(const SlstmDims& d, const SlstmBackwardArgs<T>& a) {
  FlushDenormals ftz;
  const index TT = d.T, B = d.B, H = d.H, NH = d.NH, DH = H / NH, G4 = 4 * H, TB = TT * B, I = d.I;
  copy_or_zero(a.dh_n, a.dh0, B * H);  // the outputs double as the running state gradients
  copy_or_zero(a.dc_n, a.dc0, B * H);
  copy_or_zero(a.dn_n, a.dn0, B * H);
  copy_or_zero(a.dm_n, a.dm0, B * H);
  std::fill(a.dx, a.dx + TB * I, T(0));
  if (TT == 0 || B == 0) return;
  const SlstmWorkspace<T> ws = carve(d, const_cast<T*>(a.workspace));

  std::vector<PackedB<T>> panels(static_cast<size_t>(NH));
  {
    std::vector<T> block(static_cast<size_t>(4 * DH * DH));
    for (index h = 0; h < NH; ++h) {
      head_block(a.w_hh, H, DH, h, block.data());
      pack_b<T>(false, 4 * DH, DH, block.data(), DH, panels[h]);
    }
  }
  // Gate pre-activation gradients (T*B, 4H): every (row, head) block is written below.
  UninitBuffer<T> draw(static_cast<size_t>(TB * G4));
  const Items items(NH, B);
  const int nt = static_cast<int>(std::min<index>(num_threads(), items.count()));
  if (nt > 1) note_split(SplitKind::XlstmItems);
  StopSignal stop;  // the threads never wait for one another: each leaves when it sees a stop
  TeamExit exit;
#pragma omp parallel num_threads(nt)
  {
    FlushDenormals ftz_thread;
    const index rows_max = B / items.nb + 1;
    std::vector<T> dg(static_cast<size_t>(rows_max * 4 * DH)), dh_prev(static_cast<size_t>(rows_max * DH));
#pragma omp for schedule(static) nowait
    for (index it = 0; it < items.count(); ++it) {
      const index hd = items.head(it), b0 = items.b0(it), b1 = items.b1(it), off = hd * DH;
      for (index t = TT - 1; t >= 0 && !stop.requested(); stop.poll(t--)) {
        for (index b = b0; b < b1; ++b) {
          const index row = t * B + b, u0 = row * H + off;
          T* g = dg.data() + (b - b0) * 4 * DH;
          T* gd = draw.data() + row * G4 + off;
          if (!step_valid(a.lengths, b, t)) {
            std::fill(g, g + 4 * DH, T(0));
            for (index q = 0; q < 4; ++q) std::fill(gd + q * H, gd + q * H + DH, T(0));
            continue;
          }
          backward_units(DH, H, ws.gates + row * G4 + off, ws.cprev + u0, ws.nprev + u0, ws.gap + u0,
                         ws.sfn + u0, a.dy ? a.dy + u0 : nullptr, a.dh0 + b * H + off, a.dc0 + b * H + off,
                         a.dn0 + b * H + off, a.dm0 + b * H + off, g, gd);
        }
        gemm_packed<T>(b1 - b0, 0, DH, dg.data(), 4 * DH, panels[hd], T(0), dh_prev.data(), DH);
        for (index b = b0; b < b1; ++b)
          if (step_valid(a.lengths, b, t))
            std::copy(dh_prev.data() + (b - b0) * DH, dh_prev.data() + (b - b0 + 1) * DH, a.dh0 + b * H + off);
      }
    }
    exit.leave(omp_get_num_threads(), stop);
  }

  if (stop.requested()) return;

  // Input, weight and bias gradients: one product over all T*B rows each.
  const index DI = d.in_cols();
  if (d.headwise_input) {
    parallel_tasks(NH, [&](index h) {
      for (index g = 0; g < 4; ++g)
        gemm<T>(false, false, TB, DI, DH, draw.data() + g * H + h * DH, G4, a.w_ih + (g * H + h * DH) * DI, DI,
                T(g > 0), a.dx + h * DI, I);
    });
  } else {
    gemm<T>(false, false, TB, I, G4, draw.data(), G4, a.w_ih, I, T(0), a.dx, I);
  }
  std::vector<T> x_valid;
  const T* x = valid_input_rows(a.x, TB, B, I, a.lengths, x_valid);
  if (d.headwise_input) {
    parallel_tasks(4 * NH, [&](index i) {
      const index g = i / NH, h = i % NH;
      gemm<T>(true, false, DH, DI, TB, draw.data() + g * H + h * DH, G4, x + h * DI, I, T(1),
              a.dw_ih + (g * H + h * DH) * DI, DI);
    });
  } else {
    gemm<T>(true, false, G4, I, TB, draw.data(), G4, x, I, T(1), a.dw_ih, I);
  }
  parallel_tasks(4 * NH, [&](index i) {
    const index g = i / NH, h = i % NH;
    gemm<T>(true, false, DH, DH, TB, draw.data() + g * H + h * DH, G4, ws.hprev + h * DH, H, T(1),
            a.dw_hh + (g * H + h * DH) * DH, DH);
  });
  if (a.db) add_column_sums(a.db, draw.data(), TB, G4, G4);
}

template void slstm_forward<float>(const SlstmDims&, const SlstmForwardArgs<float>&);
template void slstm_forward<double>(const SlstmDims&, const SlstmForwardArgs<double>&);
template void slstm_backward<float>(const SlstmDims&, const SlstmBackwardArgs<float>&);
template void slstm_backward<double>(const SlstmDims&, const SlstmBackwardArgs<double>&);

}  // namespace pyrnn::PYRNN_ISA
