// mLSTM layer (matrix memory, covariance update, exponential gating): forward and BPTT over a
// whole sequence. Maths: pyrnn/reference_xlstm.py.
//
// 1. There are no recurrent weights: q, k, v, the gates and the output gate of every step are
//    one GEMM, xg (T*B, rows) = x W_ih^T + bias.
// 2. Every (sequence, head) pair is independent: one OpenMP parallel region, each thread owns
//    whole pairs for all T steps (no barrier). A step updates the pair's DH x DH memory and
//    reads it out in the same pass (Vec<T>, key-major rows, read-out accumulated in registers),
//    so C stays in L1.
// 3. Training (chunkwise checkpointing): the forward saves the state (C, n, m) entering every
//    chunk of kChunk steps and nothing per step but xg. BPTT walks the chunks backwards:
//    it recomputes one chunk's states from its checkpoint into a per-thread buffer, then runs
//    the chunk's steps in reverse. Memory O(T/kChunk * DH^2) per pair instead of O(T * DH^2);
//    the arithmetic is the recurrent form's, step for step. dx, dW_ih and the bias gradient
//    are one GEMM (or sum) each over all T*B rows afterwards.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/interrupt.h"
#include "kernels/layer_plan.h"
#include "kernels/math.h"
#include "kernels/xlstm.h"
#include "kernels/xlstm_math.h"
#include "vec/lanes.h"

namespace pyrnn::PYRNN_ISA {
namespace {

constexpr index kChunk = 16;

template <typename T>
T dot(index n, const T* a, const T* b) {
  using V = Vec<T>;
  V acc = V::zero();
  index j = 0;
  for (; j + V::width <= n; j += V::width) acc = fma(V::loadu(a + j), V::loadu(b + j), acc);
  if (j < n) {
    const int w = static_cast<int>(n - j);
    acc = fma(V::load_partial(a + j, w), V::load_partial(b + j, w), acc);
  }
  return hsum(acc);
}

// The memory update and read-out of one step in one pass over C (key-major rows, C[j][:] is
// key j): C_out[j] = fp * C_in[j] + (ip k[j]) v and num = C_out^T q, accumulated in registers
// one column chunk at a time (no horizontal sums). C_out may alias C_in.
template <typename T>
void update_readout(index DH, T ip, T fp, const T* k, const T* v, const T* q, const T* C_in, T* C_out,
                    T* num) {
  using V = Vec<T>;
  const V vf = V::broadcast(fp);
  for_lanes<T>(DH, [&](index c, Lanes<T> l) PYRNN_INLINE_LAMBDA {
    const V vv = l.load(v + c);
    V acc0 = V::zero(), acc1 = V::zero();  // two chains: the FMA latency, not the chain, bounds
    index j = 0;
    for (; j + 1 < DH; j += 2) {
      const V r0 = fma(V::broadcast(ip * k[j]), vv, vf * l.load(C_in + j * DH + c));
      const V r1 = fma(V::broadcast(ip * k[j + 1]), vv, vf * l.load(C_in + (j + 1) * DH + c));
      l.store(r0, C_out + j * DH + c);
      l.store(r1, C_out + (j + 1) * DH + c);
      acc0 = fma(V::broadcast(q[j]), r0, acc0);
      acc1 = fma(V::broadcast(q[j + 1]), r1, acc1);
    }
    if (j < DH) {
      const V r0 = fma(V::broadcast(ip * k[j]), vv, vf * l.load(C_in + j * DH + c));
      l.store(r0, C_out + j * DH + c);
      acc0 = fma(V::broadcast(q[j]), r0, acc0);
    }
    l.store(acc0 + acc1, num + c);
  });
}

// n_out = fp * n_in + ip * k (n_out may alias n_in); returns n_out . q.
template <typename T>
T update_dot(index n, T ip, const T* k, T fp, const T* n_in, T* n_out, const T* q) {
  using V = Vec<T>;
  V acc = V::zero();
  for_lanes<T>(n, [&](index j, Lanes<T> l) PYRNN_INLINE_LAMBDA {
    const V r = fma(V::broadcast(ip), l.load(k + j), V::broadcast(fp) * l.load(n_in + j));
    l.store(r, n_out + j);
    acc = fma(r, l.load(q + j), acc);
  });
  return hsum(acc);
}

// Backward through row j of the memory, one pass: with dc = dC[j] + q_j dnum (the gradient
// of C_t's row), returns (C_t[j] . dnum, dc . v), adds dc * C_{t-1}[j] to dfp_acc and k_j dc
// to dv, and leaves fp * dc in dC[j] (the gradient of C_{t-1}'s row).
template <typename T>
void row_backward(index DH, T qj, T kj, T fp, const T* dnum, const T* v, const T* C_new, const T* C_prev,
                  T* dC, Vec<T>& dfp_acc, T* dv, T& c_dot_dnum, T& dc_dot_v) {
  using V = Vec<T>;
  V a1 = V::zero(), a2 = V::zero();
  const V vq = V::broadcast(qj), vk = V::broadcast(kj), vf = V::broadcast(fp);
  for_lanes<T>(DH, [&](index c, Lanes<T> l) PYRNN_INLINE_LAMBDA {
    const V dn = l.load(dnum + c);
    a1 = fma(l.load(C_new + c), dn, a1);
    const V dc = fma(vq, dn, l.load(dC + c));
    dfp_acc = fma(dc, l.load(C_prev + c), dfp_acc);
    a2 = fma(dc, l.load(v + c), a2);
    l.store(fma(vk, dc, l.load(dv + c)), dv + c);
    l.store(vf * dc, dC + c);
  });
  c_dot_dnum = hsum(a1);
  dc_dot_v = hsum(a2);
}

// What one step's backward needs besides the states.
template <typename T>
struct StepScalars {
  T a, m, ip, fp, sfn, s, den;
  bool reset;
};

struct Layout {
  index H, NH, DH, rows;
  index q(index hd) const { return hd * DH; }
  index k(index hd) const { return H + hd * DH; }
  index v(index hd) const { return 2 * H + hd * DH; }
  index i(index hd) const { return 3 * H + hd; }
  index f(index hd) const { return 3 * H + NH + hd; }
  index o(index hd) const { return 3 * H + 2 * NH + hd * DH; }
};

template <typename T>
T exp_neg_m(T m) { return std::exp(std::min(-m, T(kExpNegMCap))); }

// One recurrent step of one (sequence, head); C_out, n_out may alias C_in, n_in.
// kbuf (DH) receives the scaled key, num (DH) the read-out C_t q; returns nothing else.
template <typename T>
void step(const Layout& L, index hd, const T* xrow, T inv_sqrt, T eps, const T* C_in, const T* n_in,
          T m_in, T* C_out, T* n_out, T* kbuf, T* num, StepScalars<T>& st) {
  const index DH = L.DH;
  const T* q = xrow + L.q(hd);
  const T* v = xrow + L.v(hd);
  for (index j = 0; j < DH; ++j) kbuf[j] = xrow[L.k(hd) + j] * inv_sqrt;
  const T ig = xrow[L.i(hd)], fg = xrow[L.f(hd)];
  // An all-zero normaliser is an empty memory: its stabiliser is ignored. A NaN entry is not
  // zero, so a NaN state stays NaN (m included), as in the reference.
  st.reset = true;
  for (index j = 0; j < DH && st.reset; ++j) st.reset = std::abs(n_in[j]) < std::numeric_limits<T>::min();
  st.sfn = sigmoid_s(-fg);
  st.a = (st.reset ? neg_inf<T>() : m_in) + logsigmoid_s(fg);
  st.m = std::isnan(ig) || std::isnan(st.a) ? ig + st.a : (ig >= st.a ? ig : st.a);
  st.ip = std::exp(ig - st.m);
  st.fp = st.reset ? T(0) : std::exp(st.a - st.m);
  update_readout(DH, st.ip, st.fp, kbuf, v, q, C_in, C_out, num);
  st.s = update_dot(DH, st.ip, kbuf, st.fp, n_in, n_out, q);
  st.den = std::max(std::abs(st.s), exp_neg_m(st.m)) + eps;
  if (std::isnan(st.s)) st.den = st.s;
}

// h (DH) of a step from its read-out; og (DH) receives sigmoid(o~) when output_gate.
template <typename T>
void output(const Layout& L, index hd, const T* xrow, bool output_gate, const T* num, T den, T* og, T* h) {
  const index DH = L.DH;
  const T inv = T(1) / den;
  if (output_gate) {
    vsigmoid(DH, xrow + L.o(hd), og);
    for (index i = 0; i < DH; ++i) h[i] = num[i] * inv * og[i];
  } else {
    for (index i = 0; i < DH; ++i) h[i] = num[i] * inv;
  }
}

// ---- BPTT of one (sequence, head), a chunk of steps at a time ----

// One chunk's states, recomputed from its checkpoint (per thread, reused for every chunk).
template <typename T>
struct ChunkStates {
  index DH;
  std::vector<T> C;                 // (kChunk + 1, DH, DH) memory entering step r at r, the checkpoint at 0
  std::vector<T> n;                 // (kChunk + 1, DH) normaliser, likewise
  std::vector<T> num;               // (kChunk, DH) read-out C_t q of step r
  std::vector<StepScalars<T>> st;   // (kChunk) scalars of step r
  explicit ChunkStates(index DH_)
      : DH(DH_), C(static_cast<size_t>((kChunk + 1) * DH_ * DH_)), n(static_cast<size_t>((kChunk + 1) * DH_)),
        num(static_cast<size_t>(kChunk * DH_)), st(static_cast<size_t>(kChunk)) {}
  T* C_at(index r) { return C.data() + r * DH * DH; }
  T* n_at(index r) { return n.data() + r * DH; }
};

// Reruns the forward of `steps` steps from checkpoint ck (DD + DH + 1: C, n, m), whose rows of
// xg are xg_row(r) (R) for r < steps. kbuf (DH): scratch for the scaled key.
template <typename T, typename XgRow>
void recompute_chunk(const Layout& L, index hd, const T* ck, index steps, XgRow xg_row, T inv_sqrt, T eps,
                     ChunkStates<T>& cs, T* kbuf) {
  const index DH = L.DH, DD = DH * DH;
  std::copy(ck, ck + DD, cs.C_at(0));
  std::copy(ck + DD, ck + DD + DH, cs.n_at(0));
  T m = ck[DD + DH];
  for (index r = 0; r < steps; ++r) {
    step(L, hd, xg_row(r), inv_sqrt, eps, cs.C_at(r), cs.n_at(r), m, cs.C_at(r + 1), cs.n_at(r + 1), kbuf,
         cs.num.data() + r * DH, cs.st[r]);
    m = cs.st[r].m;
  }
}

// The running gradients of one pair's state, updated in place from step t's to step t-1's.
template <typename T>
struct StateGrads {
  T* dC;  // (DH, DH)
  T* dn;  // (DH)
  T* dm;  // (1)
};

// Per-thread vectors of a step's backward, each (DH).
template <typename T>
struct StepScratch {
  std::vector<T> storage;
  T *k, *dht, *dnum, *dnt, *og;  // scaled key, dL/dh~, dL/dnum, dL/dn_t, sigmoid(o~)
  explicit StepScratch(index DH) : storage(static_cast<size_t>(5 * DH)) {
    k = storage.data();
    dht = k + DH;
    dnum = dht + DH;
    dnt = dnum + DH;
    og = dnt + DH;
  }
};

// Through h = num / den (* sigmoid(o~)): dy (DH, or null) gives sc.dnum and, with the output
// gate, the gate's pre-activation gradient g_o (DH). Returns dL/dden.
template <typename T>
T output_backward(index DH, const T* dy, const T* num, T den, const T* o_pre, StepScratch<T>& sc, T* g_o) {
  const T inv_den = T(1) / den;
  if (o_pre) vsigmoid(DH, o_pre, sc.og);
  for (index i = 0; i < DH; ++i) {
    const T dyi = dy ? dy[i] : T(0);
    if (o_pre) {
      const T o = sc.og[i];
      g_o[i] = dyi * num[i] * inv_den * o * (T(1) - o);
      sc.dht[i] = dyi * o;
    } else {
      sc.dht[i] = dyi;
    }
    sc.dnum[i] = sc.dht[i] * inv_den;
  }
  return -dot(DH, sc.dht, num) * inv_den * inv_den;
}

// Through den = max(|s|, exp(-m)) + eps: the larger term takes dden. Returns dL/ds; exp(-m)'s
// share goes to dm_t (while -m is below the cap, past which exp(-m) is a constant).
template <typename T>
T denominator_backward(const StepScalars<T>& st, T dden, T& dm_t) {
  T ds = T(0);
  const T e = exp_neg_m(st.m);
  if (std::abs(st.s) >= e) ds = st.s > 0 ? dden : (st.s < 0 ? -dden : T(0));
  else if (-st.m <= T(kExpNegMCap)) dm_t -= dden * e;
  return ds;
}

// Through C_t = fp C_{t-1} + ip k v^T, n_t = fp n_{t-1} + ip k and the read-outs num = C_t^T q,
// s = n_t . q, one pass over C per key row. q, k (scaled), v (DH); C_prev, C_new (DH, DH);
// n_prev, n_new (DH). Writes the query, key and value gradients g_q, g_k, g_v (DH), turns
// dC, dn into the gradients of C_{t-1}, n_{t-1}, and returns dL/dip, dL/dfp in dip, dfp.
template <typename T>
void memory_backward(index DH, const StepScalars<T>& st, T ds, const T* q, const T* v, const T* C_prev,
                     const T* C_new, const T* n_prev, const T* n_new, T inv_sqrt, StepScratch<T>& sc,
                     const StateGrads<T>& sg, T* g_q, T* g_k, T* g_v, T& dip, T& dfp) {
  dip = T(0);
  Vec<T> dfp_acc = Vec<T>::zero();
  std::fill(g_v, g_v + DH, T(0));
  for (index j = 0; j < DH; ++j) {
    sc.dnt[j] = sg.dn[j] + ds * q[j];
    T c_dot_dnum, dc_dot_v;
    row_backward(DH, q[j], sc.k[j], st.fp, sc.dnum, v, C_new + j * DH, C_prev + j * DH, sg.dC + j * DH, dfp_acc,
                 g_v, c_dot_dnum, dc_dot_v);
    g_q[j] = ds * n_new[j] + c_dot_dnum;
    g_k[j] = st.ip * (dc_dot_v + sc.dnt[j]) * inv_sqrt;
    dip += sc.k[j] * dc_dot_v;
    sg.dn[j] = st.fp * sc.dnt[j];
  }
  for (index i = 0; i < DH; ++i) g_v[i] *= st.ip;
  dfp = hsum(dfp_acc) + dot(DH, sc.dnt, n_prev);
  dip += dot(DH, sc.dnt, sc.k);
}

// Through ip = exp(i~ - m), fp = exp(a - m), m = max(a, i~), a = m' + log sigmoid(f~): the
// input and forget gates' pre-activation gradients g_i, g_f, and dm for the previous step
// (0 after an empty memory, whose stabiliser was ignored).
template <typename T>
void gate_backward(const StepScalars<T>& st, T ig, T dip, T dfp, T dm_t, T& g_i, T& g_f, T& dm) {
  dm_t -= dip * st.ip + dfp * st.fp;
  T dig = dip * st.ip, da = dfp * st.fp;
  if (ig >= st.a) dig += dm_t;
  else da += dm_t;
  g_i = dig;
  g_f = da * st.sfn;
  dm = st.reset ? T(0) : da;
}

// dx (T*B, I), dW_ih (R, I) and the bias gradient (R) from the pre-activation gradients dxg
// (T*B, R): one product or sum over all rows each.
template <typename T>
void input_and_weight_grads(const MlstmDims& d, const MlstmBackwardArgs<T>& a, const T* dxg) {
  const index TB = d.T * d.B, R = d.rows(), I = d.I;
  gemm<T>(false, false, TB, I, R, dxg, R, a.w_ih, I, T(0), a.dx, I);
  std::vector<T> x_valid;
  const T* x = valid_input_rows(a.x, TB, d.B, I, a.lengths, x_valid);
  gemm<T>(true, false, R, I, TB, dxg, R, x, I, T(1), a.dw_ih, I);
  if (a.db) add_column_sums(a.db, dxg, TB, R, R);
}

}  // namespace

index mlstm_workspace_size(const MlstmDims& d) {
  const index DH = d.H / d.NH, chunks = (d.T + kChunk - 1) / kChunk;
  return d.T * d.B * d.rows() + chunks * d.B * d.NH * (DH * DH + DH + 1);
}

template <typename T>
void mlstm_forward(const MlstmDims& d, const MlstmForwardArgs<T>& a) {
  FlushDenormals ftz;
  const index TT = d.T, B = d.B, H = d.H, NH = d.NH, DH = H / NH, TB = TT * B, R = d.rows();
  const index DD = DH * DH, ck_size = DD + DH + 1;
  std::copy(a.c0, a.c0 + B * NH * DD, a.c_n);
  std::copy(a.n0, a.n0 + B * NH * DH, a.n_n);
  std::copy(a.m0, a.m0 + B * NH, a.m_n);
  if (TT == 0 || B == 0) return;
  const bool training = a.workspace != nullptr;
  UninitBuffer<T> xg_inference;
  T* xg;
  T* ckpt = nullptr;
  if (training) {
    xg = a.workspace;
    ckpt = a.workspace + TB * R;
  } else {
    xg_inference = UninitBuffer<T>(static_cast<size_t>(TB * R));
    xg = xg_inference.data();
  }
  gemm<T>(false, true, TB, R, d.I, a.x, d.I, a.w_ih, d.I, T(0), xg, R);
  StopSignal stop;  // (set already when the projection was stopped)
  if (a.bias)
    for (index r = 0; r < TB && !stop.requested(); stop.poll(r++))
      for (index k = 0; k < R; ++k) xg[r * R + k] += a.bias[k];
  if (stop.requested()) return;

  const Layout L{H, NH, DH, R};
  const T inv_sqrt = T(1) / std::sqrt(T(DH)), eps = static_cast<T>(d.eps);
  const index pairs = B * NH;
  const int nt = static_cast<int>(std::min<index>(num_threads(), pairs));
  if (nt > 1) note_split(SplitKind::XlstmItems);
  TeamExit exit;  // the threads never wait for one another: each leaves when it sees a stop
#pragma omp parallel num_threads(nt)
  {
    FlushDenormals ftz_thread;
    std::vector<T> scratch(static_cast<size_t>(3 * DH));
    T *kbuf = scratch.data(), *num = kbuf + DH, *og = num + DH;
#pragma omp for schedule(static) nowait
    for (index p = 0; p < pairs; ++p) {
      const index b = p / NH, hd = p % NH;
      T *C = a.c_n + p * DD, *n = a.n_n + p * DH, *m = a.m_n + p;
      const index Tb = a.lengths ? a.lengths[b] : TT;
      StepScalars<T> st;
      for (index t = 0; t < Tb && !stop.requested(); stop.poll(t++)) {
        if (training && t % kChunk == 0) {
          T* ck = ckpt + ((t / kChunk) * pairs + p) * ck_size;
          std::copy(C, C + DD, ck);
          std::copy(n, n + DH, ck + DD);
          ck[DD + DH] = *m;
        }
        const T* xrow = xg + (t * B + b) * R;
        step(L, hd, xrow, inv_sqrt, eps, C, n, *m, C, n, kbuf, num, st);
        *m = st.m;
        output(L, hd, xrow, d.output_gate, num, st.den, og, a.y + (t * B + b) * H + hd * DH);
      }
      for (index t = Tb; t < TT; ++t) {
        T* y = a.y + (t * B + b) * H + hd * DH;
        std::fill(y, y + DH, T(0));
      }
    }
    exit.leave(omp_get_num_threads(), stop);
  }
}

template <typename T>
void mlstm_backward(const MlstmDims& d, const MlstmBackwardArgs<T>& a) {
  FlushDenormals ftz;
  const index TT = d.T, B = d.B, H = d.H, NH = d.NH, DH = H / NH, TB = TT * B, R = d.rows();
  const index DD = DH * DH, ck_size = DD + DH + 1, pairs = B * NH;
  copy_or_zero(a.dc_n, a.dc0, pairs * DD);  // the outputs double as the running gradients
  copy_or_zero(a.dn_n, a.dn0, pairs * DH);
  copy_or_zero(a.dm_n, a.dm0, pairs);
  std::fill(a.dx, a.dx + TB * d.I, T(0));
  if (TT == 0 || B == 0) return;
  const T* xg = a.workspace;
  const T* ckpt = a.workspace + TB * R;
  std::vector<T> dxg(static_cast<size_t>(TB * R), T(0));  // (T*B, R) pre-activation gradients
  const Layout L{H, NH, DH, R};
  const T inv_sqrt = T(1) / std::sqrt(T(DH)), eps = static_cast<T>(d.eps);
  const int nt = static_cast<int>(std::min<index>(num_threads(), pairs));
  if (nt > 1) note_split(SplitKind::XlstmItems);
  StopSignal stop;  // the threads never wait for one another: each leaves when it sees a stop
  TeamExit exit;
#pragma omp parallel num_threads(nt)
  {
    FlushDenormals ftz_thread;
    ChunkStates<T> cs(DH);
    StepScratch<T> sc(DH);
#pragma omp for schedule(static) nowait
    for (index p = 0; p < pairs; ++p) {
      const index b = p / NH, hd = p % NH;
      const StateGrads<T> sg{a.dc0 + p * DD, a.dn0 + p * DH, a.dm0 + p};
      const index Tb = a.lengths ? a.lengths[b] : TT;
      for (index c = (Tb + kChunk - 1) / kChunk - 1; c >= 0 && !stop.requested(); stop.poll(c--)) {
        const index t0 = c * kChunk, t1 = std::min(t0 + kChunk, Tb);
        recompute_chunk(L, hd, ckpt + (c * pairs + p) * ck_size, t1 - t0,
                        [&](index r) { return xg + ((t0 + r) * B + b) * R; }, inv_sqrt, eps, cs, sc.k);
        for (index t = t1 - 1; t >= t0; --t) {
          const index r = t - t0, row = t * B + b;
          const StepScalars<T>& st = cs.st[r];
          const T* xrow = xg + row * R;
          for (index j = 0; j < DH; ++j) sc.k[j] = xrow[L.k(hd) + j] * inv_sqrt;
          T* g = dxg.data() + row * R;
          const T* num = cs.num.data() + r * DH;
          const T dden = output_backward(DH, a.dy ? a.dy + row * H + hd * DH : nullptr, num, st.den,
                                         d.output_gate ? xrow + L.o(hd) : nullptr, sc,
                                         d.output_gate ? g + L.o(hd) : nullptr);
          T dm_t = *sg.dm;
          const T ds = denominator_backward(st, dden, dm_t);
          T dip, dfp;
          memory_backward(DH, st, ds, xrow + L.q(hd), xrow + L.v(hd), cs.C_at(r), cs.C_at(r + 1), cs.n_at(r),
                          cs.n_at(r + 1), inv_sqrt, sc, sg, g + L.q(hd), g + L.k(hd), g + L.v(hd), dip, dfp);
          gate_backward(st, xrow[L.i(hd)], dip, dfp, dm_t, g[L.i(hd)], g[L.f(hd)], *sg.dm);
        }
      }
    }
    exit.leave(omp_get_num_threads(), stop);
  }
  if (stop.requested()) return;
  input_and_weight_grads(d, a, dxg.data());
}

template void mlstm_forward<float>(const MlstmDims&, const MlstmForwardArgs<float>&);
template void mlstm_forward<double>(const MlstmDims&, const MlstmForwardArgs<double>&);
template void mlstm_backward<float>(const MlstmDims&, const MlstmBackwardArgs<float>&);
template void mlstm_backward<double>(const MlstmDims&, const MlstmBackwardArgs<double>&);

}  // namespace pyrnn::PYRNN_ISA
