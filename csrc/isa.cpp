// Picks the kernel table once at import: the widest instruction set this CPU supports,
// unless the environment variable PYRNN_ISA names another. avx_vnni and avx512_vnni are the
// avx2 and avx512 kernels whose quantized products use the dot-product instructions
// (vpdpbusd; vdpbf16ps where the CPU has AVX-512 BF16), see csrc/quant_api.h.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "pyrnn.h"
#include "quant_api.h"

namespace pyrnn {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// AVX-VNNI is CPUID.(EAX=7, ECX=1):EAX bit 4, read directly: the __builtin_cpu_supports of
// older compilers (Clang 14) has no name for it. The caller checks avx2 first, which includes
// the operating system's support of the YMM state.
bool cpu_has_avx_vnni() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 4)) != 0;
}
#endif

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
#if defined(PYRNN_HAVE_AVX_VNNI)
  if (std::strcmp(name, "avx_vnni") == 0) return cpu_supports("avx2") && cpu_has_avx_vnni();
#endif
#if defined(PYRNN_HAVE_AVX512_VNNI)
  if (std::strcmp(name, "avx512_vnni") == 0) return cpu_supports("avx512") && __builtin_cpu_supports("avx512vnni");
#endif
#endif
  return false;
}

// A family's kernel table under the name of its dot-product ISA: the same kernels, except
// that packings record that name (packed weights are checked against the active ISA's name).
struct DotIsa {
  const char* name;
  const KernelTable& (*family)();
};
#if defined(PYRNN_HAVE_AVX_VNNI) && defined(PYRNN_HAVE_AVX512_VNNI)
constexpr DotIsa kDotIsas[] = {{"avx_vnni", &avx2::kernel_table}, {"avx512_vnni", &avx512::kernel_table}};

template <int F, typename T>
PackedLayer* pack_renamed(const LayerDims& d, const LayerForwardArgs<T>& a) {
  const KernelTable& family = kDotIsas[F].family();
  PackedLayer* p;
  if constexpr (std::is_same_v<T, float>) p = family.pack_layer_f32(d, a);
  else p = family.pack_layer_f64(d, a);
  p->isa = kDotIsas[F].name;
  return p;
}

template <int F>
const KernelTable* dot_table() {
  static const KernelTable table = [] {
    KernelTable t = kDotIsas[F].family();
    t.name = kDotIsas[F].name;
    t.pack_layer_f32 = &pack_renamed<F, float>;
    t.pack_layer_f64 = &pack_renamed<F, double>;
    return t;
  }();
  return &table;
}
#endif

const KernelTable* table_for(const char* name) {
  if (std::strcmp(name, "baseline") == 0) return &baseline::kernel_table();
#if defined(PYRNN_HAVE_AVX2)
  if (std::strcmp(name, "avx2") == 0) return &avx2::kernel_table();
#endif
#if defined(PYRNN_HAVE_AVX512)
  if (std::strcmp(name, "avx512") == 0) return &avx512::kernel_table();
#endif
#if defined(PYRNN_HAVE_AVX_VNNI) && defined(PYRNN_HAVE_AVX512_VNNI)
  if (std::strcmp(name, "avx_vnni") == 0) return dot_table<0>();
  if (std::strcmp(name, "avx512_vnni") == 0) return dot_table<1>();
#endif
  return nullptr;
}

const KernelTable* choose_default() {
  if (const char* forced = std::getenv("PYRNN_ISA"); forced != nullptr && *forced != '\0') {
    if (!isa_available(forced))
      throw std::invalid_argument(std::string("PYRNN_ISA=") + forced +
                                  " is not available on this CPU/build; choose one of "
                                  "baseline, avx2, avx_vnni, avx512, avx512_vnni that this machine supports");
    return table_for(forced);
  }
  for (const char* name : {"avx512_vnni", "avx512", "avx_vnni", "avx2"})
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

QuantKernels active_quant_kernels() {
  const std::string isa = active_isa();
  if (isa == "baseline") return {&baseline::pack_quant_layer, &baseline::quant_matmul, false, false};
#if defined(PYRNN_HAVE_AVX2)
  if (isa == "avx2" || isa == "avx_vnni") return {&avx2::pack_quant_layer, &avx2::quant_matmul, isa == "avx_vnni", false};
#endif
#if defined(PYRNN_HAVE_AVX512)
  if (isa == "avx512" || isa == "avx512_vnni") {
    const bool dot = isa == "avx512_vnni";
    return {&avx512::pack_quant_layer, &avx512::quant_matmul, dot, dot && __builtin_cpu_supports("avx512bf16")};
  }
#endif
  throw std::logic_error("no quantized kernels for the instruction set " + isa);
}

index input_chunk_bytes() { return g_input_chunk_bytes; }

void set_input_chunk_bytes(index bytes) {
  if (bytes < 1) throw std::invalid_argument("chunk size must be >= 1 byte, got " + std::to_string(bytes));
  g_input_chunk_bytes = bytes;
}

}  // namespace pyrnn
