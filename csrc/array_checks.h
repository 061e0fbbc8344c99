// Array checks shared by the binding files: each returns the argument as a C-contiguous
// array of dtype T and exact shape, or throws a Python TypeError/ValueError naming it.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "pyrnn.h"

namespace pyrnn::bind {

namespace py = pybind11;

// An expected shape: a braced list, so that checking allocates nothing.
using Shape = std::initializer_list<pyrnn::index>;

template <typename It>
std::string dims_str(It begin, It end) {
  std::string s = "(";
  for (It it = begin; it != end; ++it) s += (it != begin ? ", " : "") + std::to_string(*it);
  return s + (end - begin == 1 ? ",)" : ")");
}

inline std::string shape_str(Shape shape) { return dims_str(shape.begin(), shape.end()); }

inline std::string shape_of(const py::array& a) { return dims_str(a.shape(), a.shape() + a.ndim()); }

// Checks that `obj` is a C-contiguous array of dtype T with exactly `shape`; returns it.
template <typename T>
py::array_t<T> checked(const py::handle& obj, const char* name, Shape shape) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  // Floating types have one type number each (cheaper than building a dtype to compare); other
  // dtypes compare by value (an unpickled array's dtype is an equal but distinct object).
  const bool dtype_ok = std::is_floating_point_v<T> ? arr.dtype().num() == py::dtype::num_of<T>()
                                                    : arr.dtype().equal(py::dtype::of<T>());
  if (!dtype_ok)
    throw py::type_error(std::string(name) + " must have dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  bool ok = arr.ndim() == static_cast<py::ssize_t>(shape.size());
  py::ssize_t axis = 0;
  for (auto it = shape.begin(); ok && it != shape.end(); ++it) ok = arr.shape(axis++) == *it;
  if (!ok)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " +
                          shape_of(arr));
  return py::reinterpret_borrow<py::array_t<T>>(arr);
}

template <typename T>
const T* in_ptr(const std::optional<py::array_t<T>>& a) { return a ? a->data() : nullptr; }

template <typename T>
T* out_ptr(std::optional<py::array_t<T>>& a) { return a ? a->mutable_data() : nullptr; }

template <typename T>
std::optional<py::array_t<T>> optional_checked(const py::object& obj, const char* name, Shape shape) {
  if (obj.is_none()) return std::nullopt;
  return checked<T>(obj, name, shape);
}

// A writable gradient accumulator: must be C-contiguous, writable, of dtype T.
template <typename T>
std::optional<py::array_t<T>> grad_checked(const py::object& obj, const char* name, Shape shape) {
  auto a = optional_checked<T>(obj, name, shape);
  if (a && !a->writeable()) throw py::value_error(std::string(name) + " must be writable");
  return a;
}

// A streaming step's state: (B, n), or (1, B, n) as a one-layer layer keeps it (so that a
// layer's streaming loop hands its state over without reshaping it in Python).
template <typename T>
py::array_t<T> checked_state(const py::object& obj, const char* name, pyrnn::index B, pyrnn::index n) {
  const bool stacked = py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() == 3;
  if (stacked) return checked<T>(obj, name, {1, B, n});
  return checked<T>(obj, name, {B, n});
}

// A new state array shaped like `like` (see checked_state).
template <typename T>
py::array_t<T> state_like(const py::array_t<T>& like) {
  return py::array_t<T>(std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
}

inline std::optional<py::array_t<std::int64_t>> checked_lengths(const py::object& obj, pyrnn::index T, pyrnn::index B) {
  if (obj.is_none()) return std::nullopt;
  auto lengths = checked<std::int64_t>(obj, "lengths", {B});
  auto l = lengths.template unchecked<1>();
  for (pyrnn::index b = 0; b < B; ++b)
    if (l(b) < 1 || l(b) > T)
      throw py::value_error("lengths[" + std::to_string(b) + "] = " + std::to_string(l(b)) +
                            " is outside 1.." + std::to_string(T));
  return lengths;
}

}  // namespace pyrnn::bind
