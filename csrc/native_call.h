// How the bindings run a kernel: with the GIL released and, on Python's main thread, stoppable
// by a signal (Ctrl-C). The kernels' long loops ask (kernels/interrupt.h) every ~10 ms; the
// question takes the GIL and runs Python's signal handlers. When a handler raises (SIGINT's
// default raises KeyboardInterrupt) the kernel stops at its next step boundary and the
// exception is raised here. Signal handlers run only on the main thread, so calls on other
// threads are never asked and run to the end.
#pragma once

#include <pybind11/pybind11.h>

#include <stdexcept>
#include <utility>

#include "kernels/interrupt.h"

namespace pyrnn::bind {

namespace py = pybind11;

// The identity of Python's main thread, recorded when the module is imported.
inline unsigned long& main_thread_ident() {
  static unsigned long ident = 0;
  return ident;
}

inline void record_main_thread() {
  main_thread_ident() = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
}

// The kernels' check on the main thread: run pending signal handlers; true when one raised
// (the exception stays set on this thread until run_native raises it).
inline bool python_signal_raised() {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

// Runs `kernel` (a callable that touches no Python object) with the GIL released.
template <typename Kernel>
void run_native(Kernel&& kernel) {
  // A signal handler runs while a kernel waits on this thread with its buffers in use: a pyrnn
  // call from the handler would overwrite them.
  if (interrupt_check_installed())
    throw std::runtime_error("a pyrnn call was made from a signal handler that interrupted another "
                             "pyrnn call on the same thread; defer the work until that call returns");
  if (PyThread_get_thread_ident() != main_thread_ident()) {
    py::gil_scoped_release release;
    std::forward<Kernel>(kernel)();
    return;
  }
  InterruptCheckScope scope(&python_signal_raised);
  {
    py::gil_scoped_release release;
    std::forward<Kernel>(kernel)();
  }
  if (scope.stopped()) throw py::error_already_set();
}

}  // namespace pyrnn::bind
