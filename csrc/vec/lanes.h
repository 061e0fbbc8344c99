// Lanes<T>: loads and stores of the first m lanes of a register, for element-wise loops over
// runs whose last register may be short (block and row tails); for_lanes runs such a loop a
// register at a time, for_lane_groups a few registers at a time.
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
inline __attribute__((always_inline)) void for_lanes(index n, Body body) {
  constexpr int W = Vec<T>::width;
  for (index k = 0; k < n; k += W) body(k, Lanes<T>{static_cast<int>(std::min<index>(W, n - k))});
}

// Registers of independent work that long-latency element-wise math (exp, division) handles at
// once: written one statement at a time across the group, the chains of several registers
// interleave, which out-of-order execution alone does not achieve when one register's chain
// is a hundred instructions long (LSTM cell math: 74 -> 57 cycles per register on Zen 3).
constexpr int kRegistersInFlight = 2;

// body(k, lanes) over [0, n): lanes is a std::array of Lanes<T>, register u at k + u*width;
// groups of kRegistersInFlight full registers, then the rest one register at a time. Always
// inlined (as for_lanes), so that a row's cell math is one loop nest in its caller.
template <typename T, typename Body>
inline __attribute__((always_inline)) void for_lane_groups(index n, Body body) {
  constexpr int W = Vec<T>::width, G = kRegistersInFlight;
  index k = 0;
  std::array<Lanes<T>, G> full;
  full.fill(Lanes<T>{W});
  for (; k + G * W <= n; k += G * W) body(k, full);
  for (; k < n; k += W) body(k, std::array<Lanes<T>, 1>{Lanes<T>{static_cast<int>(std::min<index>(W, n - k))}});
}

}  // namespace pyrnn::PYRNN_ISA
