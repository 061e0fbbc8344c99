// Packed-panel GEMM (the BLIS/GotoBLAS loop structure) on Vec<T>.
//
//   for each NC-column block of B          (B block KC x NC: shared L3)
//     for each KC-deep slice of K          (pack B slice into NR-wide panels)
//       for each MC-row block of A         (pack A block into MR-row strips: L2)
//         for each NR panel                (B micro-panel KC x NR: L1)
//           for each MR strip: micro-tile  (MR x NR accumulators in registers, FMA)
//
// gemm_packed runs the same loops on B packed once by pack_b (panels of the full K) and on A
// in place. Products of at most MR rows with B not transposed skip packing: they are bound
// by reading B, which few_rows streams row by row.
//
// Every element of C is one FMA chain over k = 0..K-1 in order, restarted per KC slice
// (KC depends only on K) and the slices added to C in order. No code path (packed or direct
// operands, tile shape, thread partition, transposes) changes that, so results are bitwise
// identical for any thread count, and a row of C does not depend on the other rows of A.
#include "kernels/gemm.h"
#include "kernels/interrupt.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>

#include "vec/vec.h"

namespace pyrnn::PYRNN_ISA {
namespace {

template <typename T>
struct Blocking {
  static constexpr int W = Vec<T>::width;
  // Micro-tile MR x NR: 2*MR accumulators + 2 B vectors + 1 broadcast fill the registers.
  static constexpr int NR = 2 * W;
  static constexpr int MR = (kVectorRegisters - 3) / 2;
  // A KC x NR micro-panel of B fills a 32 KB L1 (two thirds of a 48 KB one) ...
  static constexpr index KC = 32768 / (NR * sizeof(T));
  // ... an MC x KC block of A about 192 KB of a 512 KB L2 ...
  static constexpr index MC = 196608 / (KC * sizeof(T)) / MR * MR;
  // ... and a KC x NC block of B a few MB of the shared L3, reused by many MC blocks of A;
  // with a single MC block there is no such reuse, and a block of NC_ONE_MC columns (128 KB)
  // stays in L2 between its packing and its use.
  static constexpr index NC = 256 * NR;
  static constexpr index NC_ONE_MC = 131072 / (KC * sizeof(T)) / NR * NR;
};

// Depth of the K slices: K split into equal slices of at most KC (a function of K alone).
template <typename T>
index slice_depth(index K) {
  const index slices = (K + Blocking<T>::KC - 1) / Blocking<T>::KC;
  return (K + slices - 1) / slices;
}

enum class Store { Overwrite, Scale, Accumulate };  // C = acc; C = beta*C + acc; C += acc

// Writes the first n (<= width) lanes of one accumulator to cp as `mode` says. Every path
// stores through here, so an element's result never depends on the path that computed it.
template <typename T>
inline void store_acc(T* cp, int n, Vec<T> acc, Store mode, Vec<T> beta) {
  using V = Vec<T>;
  if (mode != Store::Overwrite) {
    const V old = n == V::width ? V::loadu(cp) : V::load_partial(cp, n);
    acc = mode == Store::Accumulate ? old + acc : fma(beta, old, acc);
  }
  if (n == V::width) acc.storeu(cp);
  else acc.store_partial(cp, n);
}

// Panels a tile of R rows covers: few rows leave registers for several panels at once, which
// keeps a batch-1 product streaming B at full width.
template <typename T>
constexpr int panels_per_tile(int R) {
  return std::max(1, Blocking<T>::MR / R);
}

// Where element (r, k) of an A strip is: packed into MR-row strips (a[k*MR + r]), or in place
// in a row-major A (a[r*lda + k]) or in a column-major one, a transposed A (a[k*lda + r]).
enum class ALayout { Strips, Rows, Columns };

// One R x (P*NR) tile of C from a kc-deep slice.
//   a: the strip, laid out as kA says
//   b: P panels at b + p*ps_b, row k of a panel at + k*rs_b, NR readable columns each
//   b_next: a panel laid out like b, prefetched into cache row by row during the k loop (not
//           by a one-row tile of several panels)
//   c: (R, n_valid) written, n_valid <= P*NR
template <typename T, int R, int P, ALayout kA>
void micro_tile(index kc, const T* a, index lda, const T* b, index rs_b, index ps_b,
                const T* b_next, T* c, index ldc, index n_valid, Store mode, T beta) {
  using V = Vec<T>;
  constexpr int W = V::width, NV = 2 * P, MR = Blocking<T>::MR;
  constexpr bool kTwoLinesPerRow = 2 * W * sizeof(T) > 64;
  // C is usually far from L1 (touched once per K slice): start fetching the tile now so the
  // writeback after the k loop does not stall on it.
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) __builtin_prefetch(c + r * ldc + v * W, 1);
    __builtin_prefetch(c + r * ldc + NV * W - 1, 1);
  }
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  // Unrolled so that loop control is a smaller share of the instructions: when the core's
  // other hardware thread is busy the two share the dispatch width, and a short-K product
  // then runs at the instruction rate rather than the FMA rate.
#pragma GCC unroll 4
  for (index k = 0; k < kc; ++k) {
    // One row against several panels (a batch-1 product) reads each panel as a sequential
    // stream, which the hardware prefetcher follows: prefetching by hand would only add an
    // instruction per panel and row.
    if constexpr (!(R == 1 && P > 1)) {
      __builtin_prefetch(b_next + k * rs_b);
      if constexpr (kTwoLinesPerRow) __builtin_prefetch(b_next + k * rs_b + W);
    }
    auto a_at = [&](int r) {
      if constexpr (kA == ALayout::Strips) return V::broadcast(a[k * MR + r]);
      else if constexpr (kA == ALayout::Rows) return V::broadcast(a[r * lda + k]);
      else return V::broadcast(a[k * lda + r]);
    };
    auto b_at = [&](int v) { return V::loadu(b + (v / 2) * ps_b + k * rs_b + (v % 2) * W); };
    // Hold whichever operand has fewer vectors in registers and stream the other, so that
    // accumulators + held + 1 fit the register file.
    if constexpr (R < NV) {
      V av[R];
      for (int r = 0; r < R; ++r) av[r] = a_at(r);
      for (int v = 0; v < NV; ++v) {
        const V bv = b_at(v);
        for (int r = 0; r < R; ++r) acc[r][v] = fma(av[r], bv, acc[r][v]);
      }
    } else {
      V bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = b_at(v);
      for (int r = 0; r < R; ++r) {
        const V ar = a_at(r);
        for (int v = 0; v < NV; ++v) acc[r][v] = fma(ar, bv[v], acc[r][v]);
      }
    }
  }
  const V vbeta = V::broadcast(beta);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV && v * W < n_valid; ++v)
      store_acc(c + r * ldc + v * W, static_cast<int>(std::min<index>(W, n_valid - v * W)),
                acc[r][v], mode, vbeta);
}

// The last `count` (< Q + 1) panels of a short strip in one tile, so that even they keep
// several FMA chains in flight (one panel alone would wait on each FMA's latency).
template <typename T, int R, int Q, ALayout kA>
void last_panels(int count, index n, index kc, const T* a, index lda, const T* b, index rs_b,
                 index ps_b, const T* b_next, T* c, index ldc, Store mode, T beta) {
  if constexpr (Q >= 1) {
    if (count == Q)
      return micro_tile<T, R, Q, kA>(kc, a, lda, b, rs_b, ps_b, b_next, c, ldc, n, mode, beta);
    last_panels<T, R, Q - 1, kA>(count, n, kc, a, lda, b, rs_b, ps_b, b_next, c, ldc, mode, beta);
  }
}

// A strip of R < MR rows against the panels of n columns, panels_per_tile(R) at a time;
// b_next as for micro_tile.
template <typename T, int R, ALayout kA>
void short_strip(index n, index kc, const T* a, index lda, const T* b, index rs_b, index ps_b,
                 const T* b_next, T* c, index ldc, Store mode, T beta) {
  constexpr int NR = Blocking<T>::NR, P = panels_per_tile<T>(R);
  const index panels = (n + NR - 1) / NR;
  index p = 0;
  for (; p + P <= panels; p += P)
    micro_tile<T, R, P, kA>(kc, a, lda, b + p * ps_b, rs_b, ps_b, b_next, c + p * NR, ldc,
                            std::min<index>(P * NR, n - p * NR), mode, beta);
  if (p < panels)
    last_panels<T, R, P - 1, kA>(static_cast<int>(panels - p), n - p * NR, kc, a, lda,
                                 b + p * ps_b, rs_b, ps_b, b_next, c + p * NR, ldc, mode, beta);
}

template <typename T, ALayout kA>
using ShortStripFn = void (*)(index, index, const T*, index, const T*, index, index, const T*,
                              T*, index, Store, T);

// short_strip for R = 1 .. MR-1, indexed by R - 1.
template <typename T, ALayout kA, int... Rm1>
constexpr std::array<ShortStripFn<T, kA>, sizeof...(Rm1)> short_strip_table(
    std::integer_sequence<int, Rm1...>) {
  return {&short_strip<T, Rm1 + 1, kA>...};
}

// C block (m, n) from A block (m, kc) times B block (kc, n), B in panels as for micro_tile;
// A laid out as kA says (packed strips at a + s*MR*kc; in place with leading dimension lda).
template <typename T, ALayout kA>
void macro_block(index m, index n, index kc, const T* a, index lda, const T* b, index rs_b,
                 index ps_b, T* c, index ldc, Store mode, T beta) {
  constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  static constexpr auto short_strips =
      short_strip_table<T, kA>(std::make_integer_sequence<int, MR - 1>());
  const index strip_stride = kA == ALayout::Strips ? MR * kc : kA == ALayout::Rows ? MR * lda : MR;
  const index panels = (n + NR - 1) / NR, strips = m / MR, rest = m - strips * MR;
  // Panels outer, strips inner: each B micro-panel is loaded into L1 once and used by every
  // strip, the short last strip included (it takes a group of panels at a time). The first
  // strip of a panel prefetches the next one.
  const index group = rest > 0 ? panels_per_tile<T>(static_cast<int>(rest)) : 1;
  for (index p0 = 0; p0 < panels; p0 += group) {
    const index p1 = std::min(panels, p0 + group);
    for (index p = p0; p < p1; ++p) {
      const T* bp = b + p * ps_b;
      const T* next = p + 1 < panels ? bp + ps_b : bp;
      const index n_valid = std::min<index>(NR, n - p * NR);
      for (index s = 0; s < strips; ++s)
        micro_tile<T, MR, 1, kA>(kc, a + s * strip_stride, lda, bp, rs_b, ps_b,
                                 s == 0 ? next : bp, c + s * MR * ldc + p * NR, ldc, n_valid,
                                 mode, beta);
    }
    if (rest > 0) {
      const T* next = p1 < panels ? b + p1 * ps_b : b + p0 * ps_b;
      short_strips[rest - 1](std::min(n, p1 * NR) - p0 * NR, kc, a + strips * strip_stride, lda,
                             b + p0 * ps_b, rs_b, ps_b, next, c + strips * MR * ldc + p0 * NR,
                             ldc, mode, beta);
    }
  }
}

// C (m, n) from m <= MR rows of op(A) times B (kc, n) row-major, read in place row by row:
// a product with so few rows is bound by reading B, which this streams in long contiguous
// runs (packing, or panel-wise reads with a stride per row, would cost more than the
// arithmetic). Accumulators for a chunk of columns live in an L1 buffer; the FMA chain of
// each element is the same as in micro_tile. op(A)(r, k) is a[r*rs_a + k*cs_a].
template <typename T>
void few_rows(index m, index n, index kc, const T* a, index rs_a, index cs_a, const T* b,
              index ldb, T* c, index ldc, Store mode, T beta) {
  using V = Vec<T>;
  constexpr int W = V::width;
  constexpr index kBufferBytes = 16384;
  const index chunk = std::max<index>(W, kBufferBytes / (m * index(sizeof(T))) / W * W);
  T* acc = thread_scratch<T>(Scratch::GemmAccumulators, m * chunk);
  const V vbeta = V::broadcast(beta);
  for (index j0 = 0; j0 < n; j0 += chunk) {
    const index nj = std::min(chunk, n - j0);
    const index full = nj / W * W;
    const int tail = static_cast<int>(nj - full);
    std::fill(acc, acc + m * chunk, T(0));
    // acc[r][j] = fma(a[r][k], b[k][j], acc[r][j]) for k in order, four rows of B per pass.
    index k = 0;
    for (; k + 4 <= kc; k += 4) {
      const T* bk = b + k * ldb + j0;
      for (index r = 0; r < m; ++r) {
        const T* ar = a + r * rs_a + k * cs_a;
        const V a0 = V::broadcast(ar[0]), a1 = V::broadcast(ar[cs_a]);
        const V a2 = V::broadcast(ar[2 * cs_a]), a3 = V::broadcast(ar[3 * cs_a]);
        T* accr = acc + r * chunk;
        auto step = [&](index j, auto load) {
          V s = V::load(accr + j);
          s = fma(a0, load(bk + j), s);
          s = fma(a1, load(bk + ldb + j), s);
          s = fma(a2, load(bk + 2 * ldb + j), s);
          s = fma(a3, load(bk + 3 * ldb + j), s);
          s.store(accr + j);
        };
        for (index j = 0; j < full; j += W) step(j, [](const T* p) { return V::loadu(p); });
        if (tail) step(full, [tail](const T* p) { return V::load_partial(p, tail); });
      }
    }
    for (; k < kc; ++k) {
      const T* bk = b + k * ldb + j0;
      for (index r = 0; r < m; ++r) {
        const V ak = V::broadcast(a[r * rs_a + k * cs_a]);
        T* accr = acc + r * chunk;
        for (index j = 0; j < full; j += W)
          fma(ak, V::loadu(bk + j), V::load(accr + j)).store(accr + j);
        if (tail)
          fma(ak, V::load_partial(bk + full, tail), V::load(accr + full)).store(accr + full);
      }
    }
    for (index r = 0; r < m; ++r)
      for (index j = 0; j < nj; j += W)
        store_acc(c + r * ldc + j0 + j, static_cast<int>(std::min<index>(W, nj - j)),
                  V::load(acc + r * chunk + j), mode, vbeta);
  }
}

// Packs (kc, n) with column j taken from the row row_of(j)[0..kc) into NR-wide panels (layout
// as pack_b_panels): NR source rows are read in step, as sequential streams.
template <typename T, typename RowOf>
void pack_rows_panels(index kc, index n, RowOf row_of, T* dst, index panel_rows) {
  constexpr int NR = Blocking<T>::NR;
  const T* src[NR];
  for (index p = 0; p * NR < n; ++p) {
    const int width = static_cast<int>(std::min<index>(NR, n - p * NR));
    for (int j = 0; j < width; ++j) src[j] = row_of(p * NR + j);
    T* d = dst + p * panel_rows * NR;
    for (index k = 0; k < kc; ++k, d += NR) {
      for (int j = 0; j < width; ++j) d[j] = src[j][k];
      for (int j = width; j < NR; ++j) d[j] = T(0);
    }
  }
}

// Packs op(B) (kc, n) into NR-wide panels of `panel_rows` rows (panel p at
// dst + p*panel_rows*NR, row k at + k*NR), zero-padding the columns of the last panel.
// op(B)(k, j) is B[k*ldb + j], or B[j*ldb + k] when trans_b.
template <typename T>
void pack_b_panels(bool trans_b, index kc, index n, const T* B, index ldb, T* dst,
                   index panel_rows) {
  using V = Vec<T>;
  constexpr int NR = Blocking<T>::NR, W = V::width;
  const index full = n / NR;  // panels without padding
  const int cols = static_cast<int>(n - full * NR);  // columns of the padded last panel
  if (!trans_b) {
    // Row by row, so that B is read in long contiguous runs.
    for (index k = 0; k < kc; ++k) {
      const T* s = B + k * ldb;
      T* d = dst + k * NR;
      for (index p = 0; p < full; ++p, s += NR, d += panel_rows * NR) {
        V::loadu(s).store(d);
        V::loadu(s + W).store(d + W);
      }
      if (cols > 0) {
        V::load_partial(s, std::min(cols, W)).store(d);
        V::load_partial(s + W, std::max(cols - W, 0)).store(d + W);
      }
    }
    return;
  }
  // Column j of op(B) is row j of B.
  pack_rows_panels(kc, n, [B, ldb](index j) { return B + j * ldb; }, dst, panel_rows);
}

// Packs op(A) (m, kc) into MR-row strips (strip s at dst + s*MR*kc, element (r, k) at
// + k*MR + r); rows past m in the last strip are left unwritten (never read).
// op(A)(i, k) is A[i*lda + k], or A[k*lda + i] when trans_a.
template <typename T>
void pack_a_strips(bool trans_a, index m, index kc, const T* A, index lda, T* dst) {
  constexpr int MR = Blocking<T>::MR;
  for (index s = 0; s * MR < m; ++s) {
    const int rows = static_cast<int>(std::min<index>(MR, m - s * MR));
    T* d = dst + s * MR * kc;
    if (!trans_a) {
      const T* src = A + s * MR * lda;
      for (index k = 0; k < kc; ++k)
        for (int r = 0; r < rows; ++r) d[k * MR + r] = src[r * lda + k];
    } else {
      // Each k's rows are contiguous in a transposed A: one (partial) vector copy per k.
      using V = Vec<T>;
      const T* src = A + s * MR;
      for (index k = 0; k < kc; ++k)
        for (int r = 0; r < rows; r += V::width) {
          const int n = std::min(V::width, rows - r);
          V::load_partial(src + k * lda + r, n).store_partial(d + k * MR + r, n);
        }
    }
  }
}

// Rows a multiple of this many bytes apart put a tile's MR rows into at most two of the L1's
// sets (64 sets of 64-byte lines), where they evict one another.
constexpr index kSetAliasingBytes = 2048;

// Whether a product of m x n outputs packs its A into strips (else the tiles read A in place:
// the same products, bit for bit). Packing copies A once per column block, which pays only
// when many panels reuse the strips and A in place is slow to read: a transposed A, or rows a
// multiple of kSetAliasingBytes apart.
template <typename T>
bool packs_a(bool trans_a, index m, index n, index lda) {
  return m >= Blocking<T>::MR && n > 128 && (trans_a || (lda * index(sizeof(T))) % kSetAliasingBytes == 0);
}

// C block (mc, nc) from the op(A) block (mc, kc) at a times B panels (panel p at b + p*ps_b,
// NR-wide rows): A packed into strips first when `pack_a` (packs_a), else read in place, by
// rows or, transposed, by columns.
template <typename T>
void block_product(bool pack_a, bool trans_a, index mc, index nc, index kc, const T* a, index lda,
                   const T* b, index ps_b, T* c, index ldc, Store mode, T beta) {
  constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  if (pack_a) {
    T* strips = thread_scratch<T>(Scratch::GemmStrips, (mc + MR - 1) / MR * MR * kc);
    pack_a_strips(trans_a, mc, kc, a, lda, strips);
    macro_block<T, ALayout::Strips>(mc, nc, kc, strips, 0, b, NR, ps_b, c, ldc, mode, beta);
  } else if (trans_a) {
    macro_block<T, ALayout::Columns>(mc, nc, kc, a, lda, b, NR, ps_b, c, ldc, mode, beta);
  } else {
    macro_block<T, ALayout::Rows>(mc, nc, kc, a, lda, b, NR, ps_b, c, ldc, mode, beta);
  }
}

// C (m, n) = beta*C, for K = 0 (beta = 0 writes zeros without reading C).
template <typename T>
void scale_c(index m, index n, T beta, T* C, index ldc) {
  for (index i = 0; i < m; ++i)
    for (index j = 0; j < n; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

// The whole product on the calling thread; leaves C unfinished once `stop` is requested.
template <typename T>
void gemm_serial(bool trans_a, bool trans_b, index M, index N, index K, const T* A, index lda,
                 const T* B, index ldb, T beta, T* C, index ldc, StopSignal& stop) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR;
  const index kc_max = slice_depth<T>(K);
  auto slice_mode = [beta](index pc) {
    return pc > 0 ? Store::Accumulate : (beta == T(0) ? Store::Overwrite : Store::Scale);
  };
  if (M <= MR && !trans_b) {
    for (index pc = 0; pc < K; pc += kc_max)
      few_rows(M, N, std::min(kc_max, K - pc), trans_a ? A + pc * lda : A + pc,
               trans_a ? 1 : lda, trans_a ? lda : 1, B + pc * ldb, ldb, C, ldc, slice_mode(pc),
               beta);
    return;
  }
  const bool pack_a = packs_a<T>(trans_a, M, N, lda);
  const index nc_step = M <= Bk::MC ? Bk::NC_ONE_MC : Bk::NC;
  T* bbuf = thread_scratch<T>(Scratch::GemmPanels,
                              kc_max * std::min<index>(nc_step, (N + NR - 1) / NR * NR));
  for (index jc = 0; jc < N; jc += nc_step) {
    const index nc = std::min<index>(nc_step, N - jc);
    for (index pc = 0; pc < K; pc += kc_max) {
      const index kc = std::min(kc_max, K - pc);
      pack_b_panels(trans_b, kc, nc, trans_b ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, bbuf,
                    kc);
      for (index ic = 0; ic < M; ic += Bk::MC) {
        block_product(pack_a, trans_a, std::min<index>(Bk::MC, M - ic), nc, kc,
                      trans_a ? A + pc * lda + ic : A + ic * lda + pc, lda, bbuf, kc * NR,
                      C + ic * ldc + jc, ldc, slice_mode(pc), beta);
        stop.poll(ic);
        if (stop.requested()) return;
      }
    }
  }
}

// Below this many flops per thread (about 50 microseconds of work), forking costs more than
// it saves: the other threads may have gone to sleep after the last parallel region, and
// waking them takes tens of microseconds.
constexpr double kMinFlopsPerThread = 1 << 22;

// Threads for a product: 1 inside a parallel region or for small products.
int gemm_threads(index M, index N, index K) {
  if (omp_in_parallel()) return 1;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  return work_threads(flops, kMinFlopsPerThread, num_threads());
}

// Output split into tm row groups x tn column groups (tm * tn = threads): the one with the
// least A and B data per thread, each group at least one MR strip / NR panel.
struct Grid {
  int tm, tn;
};
template <typename T>
Grid choose_grid(int threads, index M, index N, index K) {
  const index strips = (M + Blocking<T>::MR - 1) / Blocking<T>::MR;
  const index panels = (N + Blocking<T>::NR - 1) / Blocking<T>::NR;
  Grid best{1, 1};
  double best_cost = -1;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm != 0) continue;
    const int tn = threads / tm;
    if (tm > strips || tn > panels) continue;
    const double cost = (double(M) / tm + double(N) / tn) * double(K);
    if (best_cost < 0 || cost < best_cost) best = {tm, tn}, best_cost = cost;
  }
  return best;
}

// [begin, end) of part `i` of `parts` when `units` blocks of `unit` items (total `total`) are
// shared out evenly.
std::pair<index, index> share(index total, index unit, int i, int parts) {
  const index units = (total + unit - 1) / unit;
  return {std::min(total, units * i / parts * unit), std::min(total, units * (i + 1) / parts * unit)};
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, index M, index N, index K, const T* A, index lda,
          const T* B, index ldb, T beta, T* C, index ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
  const int threads = gemm_threads(M, N, K);
  StopSignal stop;  // the threads never wait for one another: each leaves when it sees a stop
  if (threads == 1)
    return gemm_serial(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc, stop);
  TeamExit exit;
#pragma omp parallel num_threads(threads)
  {
    const Grid grid = choose_grid<T>(omp_get_num_threads(), M, N, K);
    const int t = omp_get_thread_num();
    if (t == 0 && grid.tm * grid.tn > 1)
      note_split(grid.tm == 1 ? SplitKind::GemmColumns
                 : grid.tn == 1 ? SplitKind::GemmRows : SplitKind::GemmGrid);
    if (t < grid.tm * grid.tn) {
      const auto [m0, m1] = share(M, Blocking<T>::MR, t / grid.tn, grid.tm);
      const auto [n0, n1] = share(N, Blocking<T>::NR, t % grid.tn, grid.tn);
      if (m1 > m0 && n1 > n0)
        gemm_serial(trans_a, trans_b, m1 - m0, n1 - n0, K, trans_a ? A + m0 : A + m0 * lda, lda,
                    trans_b ? B + n0 * ldb : B + n0, ldb, beta, C + m0 * ldc + n0, ldc, stop);
    }
    exit.leave(omp_get_num_threads(), stop);
  }
}

template <typename T>
index packed_panel_width() {
  return Blocking<T>::NR;
}

template <typename T>
index gemm_row_stride(index n) {
  return (n * index(sizeof(T))) % kSetAliasingBytes == 0 ? n + 64 / index(sizeof(T)) : n;
}

template <typename T>
void pack_b(bool trans_b, index K, index N, const T* B, index ldb, PackedB<T>& out) {
  constexpr int NR = Blocking<T>::NR;
  out.K = K;
  out.N = N;
  out.data.assign((N + NR - 1) / NR * NR * K, T(0));
  if (K > 0 && N > 0) pack_b_panels(trans_b, K, N, B, ldb, out.data.data(), K);
}

template <typename T>
void pack_b_rows(index K, index N, const T* const* rows, PackedB<T>& out) {
  constexpr int NR = Blocking<T>::NR;
  out.K = K;
  out.N = N;
  out.data.assign((N + NR - 1) / NR * NR * K, T(0));
  if (K > 0 && N > 0) pack_rows_panels(K, N, [rows](index j) { return rows[j]; }, out.data.data(), K);
}

template <typename T>
void gemm_packed(index M, index n_begin, index n_end, const T* A, index lda,
                 const PackedB<T>& Bp, T beta, T* C, index ldc) {
  using Bk = Blocking<T>;
  constexpr int NR = Bk::NR;
  if constexpr (std::is_same_v<T, float>)
    if (Bp.quant.kind != QuantKind::None) return quant_gemm_packed(M, n_begin, n_end, A, lda, Bp.quant, beta, C, ldc);
  const index K = Bp.K;
  if (M <= 0 || n_end <= n_begin) return;
  if (K <= 0) return scale_c(M, n_end - n_begin, beta, C + n_begin, ldc);
  const index kc_max = slice_depth<T>(K);
  const bool pack_a = packs_a<T>(false, M, n_end - n_begin, lda);
  for (index jc = n_begin; jc < n_end; jc += Bk::NC) {
    const index nc = std::min<index>(Bk::NC, n_end - jc);
    const T* panels = Bp.data.data() + jc / NR * K * NR;  // panels of the full K each
    for (index pc = 0; pc < K; pc += kc_max) {
      const index kc = std::min(kc_max, K - pc);
      const Store mode = pc > 0 ? Store::Accumulate
                                : (beta == T(0) ? Store::Overwrite : Store::Scale);
      for (index ic = 0; ic < M; ic += Bk::MC)
        block_product(pack_a, false, std::min<index>(Bk::MC, M - ic), nc, kc, A + ic * lda + pc,
                      lda, panels + pc * NR, K * NR, C + ic * ldc + jc, ldc, mode, beta);
    }
  }
}

template void gemm<float>(bool, bool, index, index, index, const float*, index, const float*,
                          index, float, float*, index);
template void gemm<double>(bool, bool, index, index, index, const double*, index,
                           const double*, index, double, double*, index);
template void pack_b<float>(bool, index, index, const float*, index, PackedB<float>&);
template void pack_b<double>(bool, index, index, const double*, index, PackedB<double>&);
template void pack_b_rows<float>(index, index, const float* const*, PackedB<float>&);
template void pack_b_rows<double>(index, index, const double* const*, PackedB<double>&);
template void gemm_packed<float>(index, index, index, const float*, index, const PackedB<float>&,
                                 float, float*, index);
template void gemm_packed<double>(index, index, index, const double*, index,
                                  const PackedB<double>&, double, double*, index);
template index packed_panel_width<float>();
template index gemm_row_stride<float>(index);
template index gemm_row_stride<double>(index);
template index packed_panel_width<double>();

}  // namespace pyrnn::PYRNN_ISA
