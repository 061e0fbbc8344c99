// AlignedVector<T>: a std::vector whose storage starts on a 64-byte (cache line, AVX-512
// register) boundary, for packed panels and scratch that SIMD kernels stream through.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <vector>

#include "buffer_pool.h"
#include "kernels/common.h"

namespace pyrnn::PYRNN_ISA {

template <typename T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t alignment{64};

  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}

  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, alignment); }

  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const AlignedAllocator<U>&) const { return false; }
};

template <typename T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

// Scratch of the calling thread, kept between calls and grown on demand (never shrunk), one
// buffer per slot for users that are live at the same time. Memory freshly taken from the
// system costs a page fault per 4 KB on first touch, a large share of a short call (glibc
// hands a freed block of a few MB back to the system, or not, depending on what else the
// process allocates).
enum class Scratch { GemmStrips, GemmPanels, GemmAccumulators, TimeLoop, Count };
template <typename T>
T* thread_scratch(Scratch slot, std::ptrdiff_t n) {
  thread_local AlignedVector<T> buffers[static_cast<int>(Scratch::Count)];
  AlignedVector<T>& buffer = buffers[static_cast<int>(slot)];
  if (static_cast<std::ptrdiff_t>(buffer.size()) < n) buffer.resize(static_cast<std::size_t>(n));
  return buffer.data();
}

// n elements of aligned scratch that the caller writes in full before reading them. Unlike a
// std::vector it is not zero-filled first: for the (T*B, G*H) gate gradients of BPTT that
// fill costs a pass over megabytes that the time loop then overwrites. Large ones come from
// and go back to the buffer pool (buffer_pool.h).
template <typename T>
class UninitBuffer {
 public:
  UninitBuffer() = default;
  explicit UninitBuffer(std::size_t n)
      : data_(static_cast<T*>(take_buffer(n * sizeof(T))), Release{n * sizeof(T)}) {}
  T* data() const { return data_.get(); }

 private:
  struct Release {
    std::size_t bytes = 0;
    void operator()(T* p) const { give_buffer(p, bytes); }
  };
  std::unique_ptr<T, Release> data_;
};

}  // namespace pyrnn::PYRNN_ISA
