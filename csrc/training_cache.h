// What a training-mode forward leaves for its backward, one type for every kernel family
// (Dims: LayerDims, SlstmDims or MlstmDims), bound to Python under its own name. Opaque to
// Python and not picklable: a layer drops its cache when pickled (a backward needs the
// forward run again).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "buffer_pool.h"

namespace pyrnn::bind {

namespace py = pybind11;

template <typename Dims>
struct TrainingCache {
  Dims dims;
  py::array x;          // the forward's input, kept alive (the Python layer passes its own copy)
  py::object lengths;   // int64 (B,) or None
  py::array workspace;  // the kernel's training workspace for dims
};

// An uninitialized (n,) array for a training workspace: a large one's memory from the buffer
// pool and returned there when the array (and so the cache holding it) is gone, a smaller one
// NumPy's.
template <typename T>
py::array_t<T> workspace_array(py::ssize_t n) {
  struct Block {
    void* p;
    std::size_t bytes;
  };
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(T);
  if (bytes < kPooledBytes) return py::array_t<T>(n);
  auto* block = new Block{take_buffer(bytes), bytes};
  py::capsule owner(block, [](void* b) {
    auto* blk = static_cast<Block*>(b);
    give_buffer(blk->p, blk->bytes);
    delete blk;
  });
  return py::array_t<T>({n}, {static_cast<py::ssize_t>(sizeof(T))}, static_cast<T*>(block->p), owner);
}

// Registers TrainingCache<Dims> as _core.<name>, made by `forward`.
template <typename Dims>
void bind_training_cache(py::module_& m, const char* name, const std::string& forward) {
  const std::string doc = "What a training-mode " + forward + " keeps for its backward (opaque).";
  py::class_<TrainingCache<Dims>>(m, name, doc.c_str())
      .def_property_readonly("nbytes", [](const TrainingCache<Dims>& c) { return c.workspace.nbytes(); });
}

// obj as a TrainingCache<Dims>, or a TypeError saying which cache was expected.
template <typename Dims>
const TrainingCache<Dims>& cast_training_cache(const py::object& obj, const char* name, const char* forward) {
  if (!py::isinstance<TrainingCache<Dims>>(obj))
    throw py::type_error(std::string("cache must be the ") + name + " returned by a training-mode " + forward);
  return obj.cast<const TrainingCache<Dims>&>();
}

}  // namespace pyrnn::bind
