// The quantized products on the CPUs' dot-product instructions, compiled apart from the other
// kernels with the flags they need (CMakeLists.txt) and called only when the CPU has them
// (the ISAs avx_vnni and avx512_vnni, csrc/isa.cpp):
//   int8  vpdpbusd: 4 products of u8 activations (q + 128) and s8 weights added to each int32
//         lane exactly; quant_tile subtracts 128 * the column sum (QuantPanels::offset)
//   bf16  vdpbf16ps (AVX-512 BF16): 2 products of bfloat16 pairs added to each float lane
// In the namespace of their ISA family (avx2 with AVX-VNNI, avx512 with AVX-512 VNNI + BF16).
// The instructions are written as inline assembly that accumulates in place: GCC's intrinsics
// for them copy every accumulator to another register and back around each instruction (twice
// the instructions of the tile's inner loop).
#include <immintrin.h>

#include <cstring>

#include "kernels/quant.h"
#include "kernels/quant_tile.h"

namespace pyrnn::PYRNN_ISA {
namespace {

std::int32_t load4(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if defined(PYRNN_ISA_avx512)
struct DotInt8 {
  static constexpr bool kInt8 = true;
  static constexpr int kVecs = 1, kRows = 4, kPanels = 4, kPanelsOneRow = 8;
  using Acc = __m512i;
  using Group = __m512i;
  static Acc zero() { return _mm512_setzero_si512(); }
  static Group group(const std::uint8_t* p) { return _mm512_set1_epi32(load4(p)); }
  static __m512i weights(const std::uint8_t* b) { return _mm512_loadu_si512(b); }
  static Acc dot(Acc acc, Group a, __m512i w) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w));
    return acc;
  }
  static void store(Acc acc, std::int32_t* out) { _mm512_store_si512(out, acc); }
};

struct DotBf16 {
  static constexpr bool kInt8 = false;
  static constexpr int kVecs = 1, kRows = 4, kPanels = 4, kPanelsOneRow = 8;
  using Acc = __m512;
  using Group = __m512i;
  static Acc zero() { return _mm512_setzero_ps(); }
  static Group group(const std::uint8_t* p) { return _mm512_set1_epi32(load4(p)); }
  static __m512i weights(const std::uint8_t* b) { return _mm512_loadu_si512(b); }
  static Acc dot(Acc acc, Group a, __m512i w) {
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w));
    return acc;
  }
  static void store(Acc acc, float* out) { _mm512_store_ps(out, acc); }
};
#else
struct DotInt8 {
  static constexpr bool kInt8 = true;
  static constexpr int kVecs = 2, kRows = 2, kPanels = 2, kPanelsOneRow = 4;
  using Acc = __m256i;
  using Group = __m256i;
  static Acc zero() { return _mm256_setzero_si256(); }
  static Group group(const std::uint8_t* p) { return _mm256_set1_epi32(load4(p)); }
  static __m256i weights(const std::uint8_t* b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)); }
  static Acc dot(Acc acc, Group a, __m256i w) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(w));
    return acc;
  }
  static void store(Acc acc, std::int32_t* out) { _mm256_store_si256(reinterpret_cast<__m256i*>(out), acc); }
};
#endif

}  // namespace

void int8_product_dot(index M, index n, index groups, const std::uint8_t* qa, index lda, const float* sa,
                      const std::uint8_t* b, const float* sw, const std::int32_t* offset, float beta,
                      float* c, index ldc) {
  quant_product<DotInt8>(M, n, groups, qa, lda, sa, b, sw, offset, beta, c, ldc);
}

#if defined(PYRNN_ISA_avx512)
void bf16_product_dot(index M, index n, index groups, const std::uint8_t* qa, index lda, const float* sa,
                      const std::uint8_t* b, const float* sw, const std::int32_t* offset, float beta,
                      float* c, index ldc) {
  quant_product<DotBf16>(M, n, groups, qa, lda, sa, b, sw, offset, beta, c, ldc);
}
#endif

}  // namespace pyrnn::PYRNN_ISA
