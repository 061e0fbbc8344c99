// What the forward and backward time loops share: the training workspace layout, the
// split of hidden units into blocks owned by threads, gate-blocked weight packing, and the
// scoped denormal flush.
#pragma once

#include <algorithm>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "kernels/common.h"
#include "kernels/gemm.h"

namespace pyrnn::PYRNN_ISA {

// Views into the training workspace; every array is indexed by real time t, (T, B, X).
template <typename T>
struct Workspace {
  T* hprev = nullptr;   // (T, B, P)   state entering step t (frozen state on padding)
  T* gates = nullptr;   // (T, B, G*H) activated gates, PyTorch order; holds x W_ih^T + b first
  T* cprev = nullptr;   // (T, B, H)   LSTM: cell state entering step t
  T* tanhc = nullptr;   // (T, B, H)   LSTM: tanh(c_t)
  T* hraw = nullptr;    // (T, B, H)   projected LSTM: o * tanh(c_t) before W_hr (0 on padding)
  T* hn_lin = nullptr;  // (T, B, H)   GRU (reset after): h W_hn^T + b_hn
};

// Offsets of the workspace arrays (-1: absent for this cell) and the total element count.
struct WorkspaceLayout {
  index hprev = -1, gates = -1, cprev = -1, tanhc = -1, hraw = -1, hn_lin = -1;
  index total = 0;
};

inline WorkspaceLayout workspace_layout(const LayerDims& d) {
  const index TB = d.T * d.B, G = gate_count(d.cell);
  WorkspaceLayout l;
  auto take = [&l](index& offset, index count) {
    offset = l.total;
    l.total += count;
  };
  take(l.hprev, TB * d.P);
  take(l.gates, TB * G * d.H);
  if (d.cell == Cell::Lstm) {
    take(l.cprev, TB * d.H);
    take(l.tanhc, TB * d.H);
    if (d.has_proj) take(l.hraw, TB * d.H);
  }
  if (d.cell == Cell::Gru) take(l.hn_lin, TB * d.H);
  return l;
}

template <typename T>
Workspace<T> carve_workspace(const LayerDims& d, T* base) {
  const WorkspaceLayout l = workspace_layout(d);
  auto at = [base](index offset) { return offset < 0 ? nullptr : base + offset; };
  return {at(l.hprev), at(l.gates), at(l.cprev), at(l.tanhc), at(l.hraw), at(l.hn_lin)};
}

// Hidden units are split into fixed blocks; a thread owns a contiguous run of blocks for
// the whole call, so its slice of the recurrent weights stays in its cache. Blocks do not
// depend on the thread count, which keeps results bitwise identical for any thread count.
struct UnitBlocks {
  index total, width, count;
  UnitBlocks(index total_, index width_)
      : total(total_), width(width_), count((total_ + width_ - 1) / width_) {}
  index begin(index j) const { return std::min(j * width, total); }
  index end(index j) const { return std::min((j + 1) * width, total); }
};

struct Range {
  index begin, end;
};

// Blocks [begin, end) of `count` for thread `tid` of `nt`.
inline Range thread_share(index count, int tid, int nt) {
  return {count * tid / nt, count * (tid + 1) / nt};
}

template <typename T>
index unit_block_width() {
  const index panel = packed_panel_width<T>();
  return panel * ((16 + panel - 1) / panel);
}

// How a time loop's team divides each step. By units: every thread owns a fixed run of hidden
// unit blocks (and projection column blocks) for all batch rows, keeping its slice of the
// weights in its own cache; steps end with a barrier. By rows: every thread owns a fixed run
// of batch rows with all units; rows never depend on each other, so the threads run the
// steps without meeting (no barrier per step to wait at when the machine is busy; they meet
// only around each chunk's input projection in inference, see layer_forward.cpp).
enum class Split { Units, Rows };

class StepBarrier;

// The calling thread's part of every step.
struct Share {
  Range rows;          // batch rows
  Range blocks;        // hidden unit blocks
  Range out_blocks;    // projection output column blocks
  Range input_blocks;  // unit blocks of the input projection (all rows): `blocks`, or when
                       // split by rows a share of them (team barriers around it, see
                       // layer_forward.cpp)
  StepBarrier* team;   // a barrier of every thread of the team, whatever the split
};

// Threads worth using for a time loop split by units, doing `flops_per_step` on `rows` batch
// rows over `parts` blocks. A barrier per step costs a few hundred nanoseconds, so each
// thread needs about a microsecond of work: 80k flops, or half that at batch 1, where a step
// is bound by streaming its weights from cache rather than by the FMAs.
inline int loop_threads(double flops_per_step, index rows, index parts) {
  constexpr double kMinWorkPerThread = 80000.0;
  const double work = flops_per_step * (rows == 1 ? 2.0 : 1.0);
  return work_threads(work, kMinWorkPerThread, std::min<index>(num_threads(), parts));
}

// A time loop's team: how many threads and how they divide each step. Splitting by rows
// needs no barrier, but every thread then reads all the recurrent weights each step: worth it
// up to about 1 MB of weights (from each core's L2, or the shared L3), where a step is short
// enough that the barrier and the narrower products of a units split cost more, as long as
// each thread gets a few rows and the call is worth a fork. Otherwise split by units
// (loop_threads).
template <typename T>
index recurrent_weight_bytes(const LayerDims& d) {
  return (gate_count(d.cell) * d.H * d.P + (d.has_proj ? d.H * d.P : 0)) * index(sizeof(T));
}

struct LoopPlan {
  int threads;
  Split split;
};
inline LoopPlan plan_loop(double flops_per_step, index steps, index recurrent_weight_bytes,
                          index rows, index unit_blocks) {
  constexpr double kMinRowsPerThread = 4;
  constexpr index kMaxWeightBytes = 1024 * 1024;
  constexpr double kMinCallFlopsPerThread = 200000.0;  // a few microseconds: above a fork/join
  const ForcedSplit forced = thread_testing().loop_split;
  const int by_rows = std::min(work_threads(double(rows), kMinRowsPerThread, std::min<index>(num_threads(), rows)),
                               work_threads(flops_per_step * double(steps), kMinCallFlopsPerThread, num_threads()));
  const bool rows_fit = by_rows > 1 && recurrent_weight_bytes <= kMaxWeightBytes;
  if (forced == ForcedSplit::Rows || (forced == ForcedSplit::Auto && rows_fit))
    return {by_rows, Split::Rows};
  return {loop_threads(flops_per_step, rows, unit_blocks), Split::Units};
}

// Steps of the input projection computed at once in inference, `step_elements` per step: the
// whole sequence while it takes at most input_chunk_bytes() (16 MB), else chunks of that size,
// and at least one step. Smaller chunks would stay in a closer cache, but each chunk's product
// then has fewer rows, which costs more than the cache gains; the bound keeps what a long
// sequence's inference holds at once from growing with T.
template <typename T>
index input_chunk_steps(index steps, index step_elements) {
  const index step_bytes = std::max<index>(1, step_elements * index(sizeof(T)));
  return std::clamp<index>(input_chunk_bytes() / step_bytes, 1, std::max<index>(steps, 1));
}

// Packs op(B) = W^T for W (G*H, K) with the columns reordered gate-blocked: for each unit
// block j, gate 0's units of the block, then gate 1's, ... A block's G*n columns are then
// contiguous, so one product gives a thread every gate of its units.
template <typename T>
void pack_gate_blocked(const T* W, index G, const UnitBlocks& blocks, index K, PackedB<T>& out) {
  const index H = blocks.total;
  std::vector<const T*> rows;
  rows.reserve(static_cast<size_t>(G * H));
  for (index j = 0; j < blocks.count; ++j)
    for (index g = 0; g < G; ++g)
      for (index u = blocks.begin(j); u < blocks.end(j); ++u) rows.push_back(W + (g * H + u) * K);
  pack_b_rows<T>(K, G * H, rows.data(), out);
}

// Flush denormals to zero (and treat denormal inputs as zero) while alive; restores the
// caller's mode. Denormal gate values otherwise slow every FMA that touches them.
class FlushDenormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#else
  FlushDenormals() = default;
#endif
};

// Runs task(i) for i in [0, n) over one OpenMP team, each task whole on one thread (a gemm
// inside sees omp_in_parallel and stays serial, so its result is the same on any thread): for
// many small independent products, which one at a time would each be split for little work.
template <typename Task>
void parallel_tasks(index n, Task task) {
  const int nt = static_cast<int>(std::max<index>(1, std::min<index>(num_threads(), n)));
  if (nt > 1) note_split(SplitKind::Tasks);
#pragma omp parallel num_threads(nt)
  {
    FlushDenormals ftz;
#pragma omp for schedule(dynamic)
    for (index i = 0; i < n; ++i) task(i);
  }
}

// Row b is inside its sequence at time t.
inline bool step_valid(const std::int64_t* lengths, index b, index t) {
  return lengths == nullptr || t < lengths[b];
}

// dst (n) = src, or zeros without src: a backward's incoming state gradient (optional) as the
// running gradient it updates in place.
template <typename T>
void copy_or_zero(const T* src, T* dst, index n) {
  if (src) std::copy(src, src + n, dst);
  else std::fill(dst, dst + n, T(0));
}

// out (cols) += the column sums of m (rows, cols; row stride ld): a bias gradient from the
// pre-activation gradients of all rows, summed in row order.
template <typename T>
void add_column_sums(T* out, const T* m, index rows, index cols, index ld) {
  for (index r = 0; r < rows; ++r)
    for (index k = 0; k < cols; ++k) out[k] += m[r * ld + k];
}

// x (T*B rows of I) as the weight-gradient products must see it: without lengths x itself,
// else a copy in `storage` with the rows of padding steps zeroed (0 * NaN from padded input
// would otherwise leak into the sums).
template <typename T>
const T* valid_input_rows(const T* x, index rows, index B, index I, const std::int64_t* lengths,
                          std::vector<T>& storage) {
  if (lengths == nullptr) return x;
  storage.assign(x, x + rows * I);
  for (index row = 0; row < rows; ++row)
    if (!step_valid(lengths, row % B, row / B))
      std::fill(storage.begin() + row * I, storage.begin() + (row + 1) * I, T(0));
  return storage.data();
}

}  // namespace pyrnn::PYRNN_ISA
