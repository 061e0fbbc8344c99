// Picks the kernel table once at import: the widest instruction set this CPU supports,
// unless the environment variable PYRNN_ISA names another.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "pyrnn.h"

namespace pyrnn {
namespace {

bool cpu_supports(const char* name) {
  if (std::strcmp(name, "baseline") == 0) return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#if defined(PYRNN_HAVE_AVX2)
  if (std::strcmp(name, "avx2") == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(PYRNN_HAVE_AVX512)
  if (std::strcmp(name, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
#endif
#endif
  return false;
}

const KernelTable* table_for(const char* name) {
  if (std::strcmp(name, "baseline") == 0) return &baseline::kernel_table();
#if defined(PYRNN_HAVE_AVX2)
  if (std::strcmp(name, "avx2") == 0) return &avx2::kernel_table();
#endif
#if defined(PYRNN_HAVE_AVX512)
  if (std::strcmp(name, "avx512") == 0) return &avx512::kernel_table();
#endif
  return nullptr;
}

const KernelTable* choose_default() {
  if (const char* forced = std::getenv("PYRNN_ISA"); forced != nullptr && *forced != '\0') {
    if (!isa_available(forced))
      throw std::invalid_argument(std::string("PYRNN_ISA=") + forced +
                                  " is not available on this CPU/build; choose one of "
                                  "baseline, avx2, avx512 that this machine supports");
    return table_for(forced);
  }
  for (const char* name : {"avx512", "avx2"})
    if (isa_available(name)) return table_for(name);
  return table_for("baseline");
}

const KernelTable* g_active = nullptr;
index g_input_chunk_bytes = index(16) << 20;

}  // namespace

bool isa_available(const char* name) { return table_for(name) != nullptr && cpu_supports(name); }

const KernelTable& active_kernels() {
  if (g_active == nullptr) g_active = choose_default();
  return *g_active;
}

const char* active_isa() { return active_kernels().name; }

void select_isa(const char* name) {
  if (!isa_available(name))
    throw std::invalid_argument(std::string("instruction set '") + name +
                                "' is not available on this CPU/build");
  g_active = table_for(name);
}

index input_chunk_bytes() { return g_input_chunk_bytes; }

void set_input_chunk_bytes(index bytes) {
  if (bytes < 1) throw std::invalid_argument("chunk size must be >= 1 byte, got " + std::to_string(bytes));
  g_input_chunk_bytes = bytes;
}

}  // namespace pyrnn
