// Array checks shared by the binding files: each returns the argument as a C-contiguous
// array of dtype T (native byte order) and exact shape, or throws a Python TypeError/ValueError
// naming it.
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

// Whether `dt` is the element type T in either byte order. Compared by value (kind and size):
// NumPy makes new dtype objects when it unpickles or deep-copies an array, so an identity test
// would refuse an equal dtype; the size also accepts both 8-byte integer type numbers (long and
// long long).
template <typename T>
bool holds(const py::dtype& dt) {
  constexpr char kind = std::is_floating_point_v<T> ? 'f' : std::is_signed_v<T> ? 'i' : 'u';
  return dt.kind() == kind && dt.itemsize() == static_cast<py::ssize_t>(sizeof(T));
}

// Whether the elements of `dt` are stored in this machine's byte order ('=' native, '|' single
// byte; NumPy writes the explicit '<' or '>' only for the order that is not native).
inline bool native_byte_order(const py::dtype& dt) {
  const char order = dt.byteorder();
  constexpr char native = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) ? '<' : '>';
  return order == '=' || order == '|' || order == native;
}

inline std::string dtype_name(const py::dtype& dt) { return std::string(py::str(dt)); }

// Whether x holds float32 (true) or float64 (false), in either byte order; a TypeError naming
// `name` otherwise. The kernels' dtype follows x.
inline bool is_float32(const py::array& x, const char* name) {
  const py::dtype dt = x.dtype();
  if (holds<float>(dt)) return true;
  if (holds<double>(dt)) return false;
  throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " + dtype_name(dt));
}

// Checks that `obj` is a C-contiguous array of dtype T with exactly `shape`; returns it. An
// array of T in the other byte order is returned as a native copy (the kernels read native
// bytes), so the result may not be `obj` itself.
template <typename T>
py::array_t<T> checked(const py::handle& obj, const char* name, Shape shape) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  const py::dtype dt = arr.dtype();
  if (!holds<T>(dt))
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name(py::dtype::of<T>()) + ", got " +
                         dtype_name(dt));
  if (!native_byte_order(dt)) {
    arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(arr);
    if (!arr) throw py::type_error(std::string(name) + ": could not convert to native byte order");
  }
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  bool ok = arr.ndim() == static_cast<py::ssize_t>(shape.size());
  py::ssize_t axis = 0;
  for (auto it = shape.begin(); ok && it != shape.end(); ++it) ok = arr.shape(axis++) == *it;
  if (!ok)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " +
                          shape_of(arr));
  return py::reinterpret_steal<py::array_t<T>>(arr.release());
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

// A gradient accumulator, written in place: must be C-contiguous, writable, of dtype T in
// native byte order (a converted copy would lose the writes).
template <typename T>
std::optional<py::array_t<T>> grad_checked(const py::object& obj, const char* name, Shape shape) {
  auto a = optional_checked<T>(obj, name, shape);
  if (!a) return a;
  if (!a->is(obj)) throw py::value_error(std::string(name) + " must be in native byte order (it is written in place)");
  if (!a->writeable()) throw py::value_error(std::string(name) + " must be writable");
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
