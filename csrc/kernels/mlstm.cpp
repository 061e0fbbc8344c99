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
  alignas(64) T lanes[V::width];
  acc.storeu(lanes);
  T s = T(0);
  for (int i = 0; i < V::width; ++i) s += lanes[i];
  return s;
}

// The memory update and read-out of one step in one pass over C (key-major rows, C[j][:] is
// key j): C_out[j] = fp * C_in[j] + (ip k[j]) v and num = C_out^T q, accumulated in registers
// one column chunk at a time (no horizontal sums). C_out may alias C_in.
template <typename T>
void update_readout(index DH, T ip, T fp, const T* k, const T* v, const T* q, const T* C_in, T* C_out,
                    T* num) {
  using V = Vec<T>;
  const V vf = V::broadcast(fp);
  for (index c = 0; c < DH; c += V::width) {
    const int w = static_cast<int>(std::min<index>(V::width, DH - c));
    const V vv = load_n(v + c, w);
    V acc0 = V::zero(), acc1 = V::zero();  // two chains: the FMA latency, not the chain, bounds
    index j = 0;
    for (; j + 1 < DH; j += 2) {
      const V r0 = fma(V::broadcast(ip * k[j]), vv, vf * load_n(C_in + j * DH + c, w));
      const V r1 = fma(V::broadcast(ip * k[j + 1]), vv, vf * load_n(C_in + (j + 1) * DH + c, w));
      store_n(r0, C_out + j * DH + c, w);
      store_n(r1, C_out + (j + 1) * DH + c, w);
      acc0 = fma(V::broadcast(q[j]), r0, acc0);
      acc1 = fma(V::broadcast(q[j + 1]), r1, acc1);
    }
    if (j < DH) {
      const V r0 = fma(V::broadcast(ip * k[j]), vv, vf * load_n(C_in + j * DH + c, w));
      store_n(r0, C_out + j * DH + c, w);
      acc0 = fma(V::broadcast(q[j]), r0, acc0);
    }
    store_n(acc0 + acc1, num + c, w);
  }
}

template <typename T>
T hsum(Vec<T> v) {
  alignas(64) T lanes[Vec<T>::width];
  v.storeu(lanes);
  T s = T(0);
  for (int i = 0; i < Vec<T>::width; ++i) s += lanes[i];
  return s;
}

// n_out = fp * n_in + ip * k (n_out may alias n_in); returns n_out . q.
template <typename T>
T update_dot(index n, T ip, const T* k, T fp, const T* n_in, T* n_out, const T* q) {
  using V = Vec<T>;
  V acc = V::zero();
  for (index j = 0; j < n; j += V::width) {
    const int w = static_cast<int>(std::min<index>(V::width, n - j));
    const V r = fma(V::broadcast(ip), load_n(k + j, w), V::broadcast(fp) * load_n(n_in + j, w));
    store_n(r, n_out + j, w);
    acc = fma(r, load_n(q + j, w), acc);
  }
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
  for (index c = 0; c < DH; c += V::width) {
    const int w = static_cast<int>(std::min<index>(V::width, DH - c));
    const V dn = load_n(dnum + c, w);
    a1 = fma(load_n(C_new + c, w), dn, a1);
    const V dc = fma(vq, dn, load_n(dC + c, w));
    dfp_acc = fma(dc, load_n(C_prev + c, w), dfp_acc);
    a2 = fma(dc, load_n(v + c, w), a2);
    store_n(fma(vk, dc, load_n(dv + c, w)), dv + c, w);
    store_n(vf * dc, dC + c, w);
  }
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

// Per-(sequence, head) slices of the state arrays.
template <typename T>
struct PairState {
  T *C, *n, *m;
};

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
  const index TT = d.T, B = d.B, H = d.H, NH = d.NH, DH = H / NH, TB = TT * B, R = d.rows(), I = d.I;
  const index DD = DH * DH, ck_size = DD + DH + 1, pairs = B * NH;
  auto copy_or_zero = [](const T* src, T* dst, index n) {
    if (src) std::copy(src, src + n, dst);
    else std::fill(dst, dst + n, T(0));
  };
  copy_or_zero(a.dc_n, a.dc0, pairs * DD);  // the outputs double as the running gradients
  copy_or_zero(a.dn_n, a.dn0, pairs * DH);
  copy_or_zero(a.dm_n, a.dm0, pairs);
  std::fill(a.dx, a.dx + TB * I, T(0));
  if (TT == 0 || B == 0) return;
  const T* xg = a.workspace;
  const T* ckpt = a.workspace + TB * R;
  std::vector<T> dxg(static_cast<size_t>(TB * R), T(0));
  const Layout L{H, NH, DH, R};
  const T inv_sqrt = T(1) / std::sqrt(T(DH)), eps = static_cast<T>(d.eps);
  const int nt = static_cast<int>(std::min<index>(num_threads(), pairs));
  if (nt > 1) note_split(SplitKind::XlstmItems);
  StopSignal stop;  // the threads never wait for one another: each leaves when it sees a stop
  TeamExit exit;
#pragma omp parallel num_threads(nt)
  {
    FlushDenormals ftz_thread;
    // One chunk's states: C, n after each step (index 0: the checkpoint), read-outs, scalars.
    std::vector<T> Cs(static_cast<size_t>((kChunk + 1) * DD)), ns(static_cast<size_t>((kChunk + 1) * DH));
    std::vector<T> nums(static_cast<size_t>(kChunk * DH)), vecs(static_cast<size_t>(5 * DH));
    std::vector<StepScalars<T>> sts(static_cast<size_t>(kChunk));
    T *kbuf = vecs.data(), *dht = kbuf + DH, *dnum = dht + DH, *dnt = dnum + DH, *og = dnt + DH;
#pragma omp for schedule(static) nowait
    for (index p = 0; p < pairs; ++p) {
      const index b = p / NH, hd = p % NH;
      T *dC = a.dc0 + p * DD, *dn = a.dn0 + p * DH, *dm = a.dm0 + p;
      const index Tb = a.lengths ? a.lengths[b] : TT;
      for (index c = (Tb + kChunk - 1) / kChunk - 1; c >= 0 && !stop.requested(); stop.poll(c--)) {
        const index t0 = c * kChunk, t1 = std::min(t0 + kChunk, Tb);
        const T* ck = ckpt + (c * pairs + p) * ck_size;
        std::copy(ck, ck + DD, Cs.data());
        std::copy(ck + DD, ck + DD + DH, ns.data());
        T m = ck[DD + DH];
        for (index t = t0; t < t1; ++t) {
          const index r = t - t0;
          step(L, hd, xg + (t * B + b) * R, inv_sqrt, eps, Cs.data() + r * DD, ns.data() + r * DH, m,
               Cs.data() + (r + 1) * DD, ns.data() + (r + 1) * DH, kbuf, nums.data() + r * DH, sts[r]);
          m = sts[r].m;
        }
        for (index t = t1 - 1; t >= t0; --t) {
          const index r = t - t0;
          const StepScalars<T>& st = sts[r];
          const T* xrow = xg + (t * B + b) * R;
          const T *q = xrow + L.q(hd), *v = xrow + L.v(hd);
          for (index j = 0; j < DH; ++j) kbuf[j] = xrow[L.k(hd) + j] * inv_sqrt;
          const T* num = nums.data() + r * DH;
          const T *C_prev = Cs.data() + r * DD, *C_new = Cs.data() + (r + 1) * DD;
          const T *n_prev = ns.data() + r * DH, *n_new = ns.data() + (r + 1) * DH;
          T* g = dxg.data() + (t * B + b) * R;
          const T* dy = a.dy ? a.dy + (t * B + b) * H + hd * DH : nullptr;
          const T inv_den = T(1) / st.den;
          if (d.output_gate) vsigmoid(DH, xrow + L.o(hd), og);
          for (index i = 0; i < DH; ++i) {
            const T dyi = dy ? dy[i] : T(0);
            if (d.output_gate) {
              const T o = og[i];
              g[L.o(hd) + i] = dyi * num[i] * inv_den * o * (T(1) - o);
              dht[i] = dyi * o;
            } else {
              dht[i] = dyi;
            }
            dnum[i] = dht[i] * inv_den;
          }
          const T dden = -dot(DH, dht, num) * inv_den * inv_den;
          T dmt = *dm, ds = T(0);
          const T e = exp_neg_m(st.m);
          if (std::abs(st.s) >= e) ds = st.s > 0 ? dden : (st.s < 0 ? -dden : T(0));
          else if (-st.m <= T(kExpNegMCap)) dmt -= dden * e;
          T dip = T(0);
          Vec<T> dfp_acc = Vec<T>::zero();
          T* dv = g + L.v(hd);
          std::fill(dv, dv + DH, T(0));
          for (index j = 0; j < DH; ++j) {
            dnt[j] = dn[j] + ds * q[j];
            T c_dot_dnum, dc_dot_v;
            row_backward(DH, q[j], kbuf[j], st.fp, dnum, v, C_new + j * DH, C_prev + j * DH, dC + j * DH,
                         dfp_acc, dv, c_dot_dnum, dc_dot_v);
            g[L.q(hd) + j] = ds * n_new[j] + c_dot_dnum;
            g[L.k(hd) + j] = st.ip * (dc_dot_v + dnt[j]) * inv_sqrt;
            dip += kbuf[j] * dc_dot_v;
            dn[j] = st.fp * dnt[j];
          }
          for (index i = 0; i < DH; ++i) dv[i] *= st.ip;
          const T dfp = hsum(dfp_acc) + dot(DH, dnt, n_prev);
          dip += dot(DH, dnt, kbuf);
          dmt -= dip * st.ip + dfp * st.fp;
          T dig = dip * st.ip, da = dfp * st.fp;
          if (xrow[L.i(hd)] >= st.a) dig += dmt;
          else da += dmt;
          g[L.i(hd)] = dig;
          g[L.f(hd)] = da * st.sfn;
          *dm = st.reset ? T(0) : da;
        }
      }
    }
    exit.leave(omp_get_num_threads(), stop);
  }

  if (stop.requested()) return;

  gemm<T>(false, false, TB, I, R, dxg.data(), R, a.w_ih, I, T(0), a.dx, I);
  std::vector<T> x_valid;
  const T* x = valid_input_rows(a.x, TB, B, I, a.lengths, x_valid);
  gemm<T>(true, false, R, I, TB, dxg.data(), R, x, I, T(1), a.dw_ih, I);
  if (a.db)
    for (index r = 0; r < TB; ++r)
      for (index k = 0; k < R; ++k) a.db[k] += dxg[r * R + k];
}

template void mlstm_forward<float>(const MlstmDims&, const MlstmForwardArgs<float>&);
template void mlstm_forward<double>(const MlstmDims&, const MlstmForwardArgs<double>&);
template void mlstm_backward<float>(const MlstmDims&, const MlstmBackwardArgs<float>&);
template void mlstm_backward<double>(const MlstmDims&, const MlstmBackwardArgs<double>&);

}  // namespace pyrnn::PYRNN_ISA
