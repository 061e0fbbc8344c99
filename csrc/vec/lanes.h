// Lanes<T>: loads and stores of the first m lanes of a register, for element-wise loops over
// runs whose last register may be short (block and row tails); for_lanes runs such a loop a
// register at a time, for_lane_groups a LaneGroup of a few registers at a time.
#pragma once

#include <algorithm>
#include <array>

#include "vec/vec.h"

namespace pyrnn::PYRNN_ISA {

template <typename T>
struct Lanes {
  int m;
  Vec<T> load(const T* p) const { return m == Vec<T>::width ? Vec<T>::loadu(p) : Vec<T>::load_partial(p, m); }
  void store(Vec<T> v, T* p) const {
    if (m == Vec<T>::width) v.storeu(p);
    else v.store_partial(p, m);
  }
};

// body(k, lanes) for k = 0, width, 2*width, ... < n, the last call's lanes possibly short.
template <typename T, typename Body>
PYRNN_ALWAYS_INLINE void for_lanes(index n, Body body) {
  constexpr int W = Vec<T>::width;
  for (index k = 0; k < n; k += W) body(k, Lanes<T>{static_cast<int>(std::min<index>(W, n - k))});
}

// Registers of independent work that long-latency element-wise math (exp, division) handles at
// once: written one statement at a time across the group, the chains of several registers
// interleave, which out-of-order execution alone does not achieve when one register's chain
// is a hundred instructions long (the LSTM cell math).
constexpr int kRegistersInFlight = 2;

// N registers of a run from k0: register u holds elements [at(u), at(u) + lanes[u].m).
template <typename T, int N>
struct LaneGroup {
  static constexpr int size = N;
  index k0;
  std::array<Lanes<T>, N> lanes;
  index at(int u) const { return k0 + u * Vec<T>::width; }
  // statement(u) for every register: the cell math writes each step of its chain this way.
  template <typename Statement>
  PYRNN_ALWAYS_INLINE void each(Statement statement) const {
    for (int u = 0; u < N; ++u) statement(u);
  }
};

// body(group) over [0, n): groups of kRegistersInFlight full registers, then the rest one
// register at a time. Always inlined (as for_lanes), so that a row's cell math is one loop
// nest in its caller.
template <typename T, typename Body>
PYRNN_ALWAYS_INLINE void for_lane_groups(index n, Body body) {
  constexpr int W = Vec<T>::width, G = kRegistersInFlight;
  LaneGroup<T, G> full{0, {}};
  full.lanes.fill(Lanes<T>{W});
  index k = 0;
  for (; k + G * W <= n; k += G * W) {
    full.k0 = k;
    body(full);
  }
  for (; k < n; k += W)
    body(LaneGroup<T, 1>{k, {Lanes<T>{static_cast<int>(std::min<index>(W, n - k))}}});
}

}  // namespace pyrnn::PYRNN_ISA
