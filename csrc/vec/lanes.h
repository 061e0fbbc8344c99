// Lanes<T>: loads and stores of the first m lanes of a register, for element-wise loops over
// runs whose last register may be short (block and row tails), and for_lanes to run one.
#pragma once

#include <algorithm>

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
inline void for_lanes(index n, Body body) {
  constexpr int W = Vec<T>::width;
  for (index k = 0; k < n; k += W) body(k, Lanes<T>{static_cast<int>(std::min<index>(W, n - k))});
}

}  // namespace pyrnn::PYRNN_ISA
