#!/usr/bin/env bash
# Sanitizer builds of the extension, each run against the test suite from a staging copy of the
# package (pyrnn/*.py + the sanitized _core), with the Python of the active environment (which
# needs the [test] extra installed). Usage: .ci/sanitizers.sh asan|tsan WORKDIR
#
# asan: GCC, AddressSanitizer + UndefinedBehaviorSanitizer (any UB aborts), the whole suite.
#   CPython is not built with ASan, so its runtime is preloaded, with libstdc++ next to it
#   (ASan must intercept C++ throws before libstdc++ binds them). Leak detection is off: CPython
#   keeps its interned objects to the end. allocator_may_return_null lets the tests of
#   oversized requests see MemoryError instead of an ASan abort.
# tsan: ThreadSanitizer on the threaded tests, at reduced scope (TSan is 5-15x slower): the
#   core layers' both thread splits on every ISA (tests/test_threads.py) and the xLSTM kernels
#   on 1-3 threads. GCC's libgomp is not instrumented, so TSan cannot see
#   its barriers and would report their ordering as races; this job therefore builds with Clang
#   against LLVM's libomp and loads Archer (libarcher.so), the OMPT tool that tells TSan about
#   OpenMP's synchronisation, and ignores accesses inside the uninstrumented runtimes
#   (ignore_noninstrumented_modules). Python is not instrumented either, so a shared TSan runtime
#   is preloaded: GCC's libtsan.so (Clang 14's shared runtime crashes when preloaded into an
#   uninstrumented program). Without clang++, libomp or Archer the job says so and fails.
set -euo pipefail

job="$1"
work="$2"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$(command -v python)"
pytest="$(dirname "$python")/pytest"   # not python -m pytest: that would import ./pyrnn first
mkdir -p "$work"

stage() {   # stage BUILD_DIR STAGE_DIR: the package's Python files plus the built module
  rm -rf "$2"
  mkdir -p "$2"
  (cd "$repo" && git ls-files pyrnn | grep -v '\.so$' | tar -cf - -T -) | tar -xf - -C "$2"
  cp "$1"/_core*.so "$2/pyrnn/"
}

configure() {  # configure BUILD_DIR CXX FLAGS...: configures and builds, the output in BUILD_DIR.log
  local dir="$1" cxx="$2"
  shift 2
  if ! { cmake -S "$repo" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
           -DPython_EXECUTABLE="$python" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" \
           "-DCMAKE_CXX_FLAGS=$*" "-DCMAKE_MODULE_LINKER_FLAGS=$*" && ninja -C "$dir"; } >"$dir.log" 2>&1; then
    echo "the $cxx sanitizer build failed; the end of $dir.log:" >&2
    tail -40 "$dir.log" >&2
    exit 1
  fi
}

case "$job" in
asan)
  flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
  configure "$work/asan-build" g++ "$flags"
  stage "$work/asan-build" "$work/asan"
  preload="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
  cd "$repo"
  env LD_PRELOAD="$preload" PYTHONPATH="$work/asan" \
    ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$pytest" -q -p no:cacheprovider --rootdir="$repo" -o addopts="" tests \
      --ignore=tests/test_fuzz_layers.py --ignore=tests/test_fuzz_checkpoint.py
  # the fuzz files at their default size (a few hundred examples), separately to keep the
  # suite's order: hypothesis is slower under ASan
  env LD_PRELOAD="$preload" PYTHONPATH="$work/asan" \
    ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$pytest" -q -p no:cacheprovider --rootdir="$repo" -o addopts="" \
      tests/test_fuzz_layers.py tests/test_fuzz_checkpoint.py
  ;;
tsan)
  archer="$(find /usr/lib/llvm-*/lib -name libarcher.so 2>/dev/null | head -1)"
  if ! command -v clang++ >/dev/null || [ -z "$archer" ]; then
    echo "tsan: needs clang++ with LLVM's libomp and its Archer tool (Debian: apt-get install clang libomp-dev)" >&2
    exit 1
  fi
  configure "$work/tsan-build" clang++ "-fsanitize=thread -fno-omit-frame-pointer -g"
  stage "$work/tsan-build" "$work/tsan"
  cd "$repo"
  env LD_PRELOAD="$(g++ -print-file-name=libtsan.so)" PYTHONPATH="$work/tsan" \
    OMP_TOOL_LIBRARIES="$archer" LD_LIBRARY_PATH="$(dirname "$archer")" \
    TSAN_OPTIONS="halt_on_error=1:ignore_noninstrumented_modules=1:second_deadlock_stack=1" \
    "$pytest" -q -p no:cacheprovider --rootdir="$repo" -o addopts="" \
      tests/test_threads.py tests/test_xlstm_native.py::test_bitwise_identical_for_any_thread_count
  ;;
*)
  echo "usage: $0 asan|tsan WORKDIR" >&2
  exit 2
  ;;
esac
