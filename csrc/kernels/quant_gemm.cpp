// Quantized products (quant.h): packing of int8 / bfloat16 weight panels, run-time
// quantization of the activations, and the dot products of this instruction set:
//   baseline  scalar int32 / float code
//   avx2      int8: vpmaddubsw on |a| and sign(a)*w (vpsignb), then vpmaddwd: |a| <= 127 and
//             |w| <= 127 keep each pair sum within int16 (2 * 127 * 127 < 32767), so nothing
//             saturates; bf16: pairs widened to float (exact) and two FMAs
//   avx512    the same on 512-bit registers (sign applied with a byte mask, AVX-512BW)
// and, compiled apart with the instructions they need (native_dot/quant_dot.cpp):
//   AVX-512 VNNI / AVX-VNNI vpdpbusd on u8 = q + 128 activations, minus 128 * the column sum;
//   AVX-512 BF16 vdpbf16ps.
// Every path computes the same exact int32 sums; bf16 paths add each pair's products odd k
// first, as vdpbf16ps does.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/quant.h"
#include "kernels/quant_tile.h"

#if defined(PYRNN_ISA_avx2) || defined(PYRNN_ISA_avx512)
#include <immintrin.h>
#endif

namespace pyrnn::PYRNN_ISA {

// The native dot-product kernels (native_dot/quant_dot.cpp), built where the ISA family has
// them; arguments as quant_product's.
#if defined(PYRNN_ISA_avx2) || defined(PYRNN_ISA_avx512)
void int8_product_dot(index M, index n, index groups, const std::uint8_t* qa, index lda, const float* sa,
                      const std::uint8_t* b, const float* sw, const std::int32_t* offset, float beta,
                      float* c, index ldc);
#endif
#if defined(PYRNN_ISA_avx512)
void bf16_product_dot(index M, index n, index groups, const std::uint8_t* qa, index lda, const float* sa,
                      const std::uint8_t* b, const float* sw, const std::int32_t* offset, float beta,
                      float* c, index ldc);
#endif

namespace {

// Rows whose largest magnitude is below this quantize to zeros (127 / amax would overflow).
constexpr float kMinRowMax = 1e-30f;

std::uint32_t bits_of(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
float float_of(std::uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

std::int32_t load4(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- activations ----

// Row x (K) quantized symmetrically: q (groups*4 bytes, zero-padded; + 128 when `shift`) and
// its scale, amax / 127. NaN or Inf anywhere: scale NaN (the row's products are NaN).
void quantize_row_int8(index K, const float* x, index groups, bool shift, std::uint8_t* q, float* scale) {
  std::uint32_t max_bits = 0;  // |x| as bits: NaN > Inf > every finite value
  for (index k = 0; k < K; ++k) max_bits = std::max(max_bits, bits_of(x[k]) & 0x7fffffffu);
  const float amax = float_of(max_bits);
  const std::uint8_t zero = shift ? 128 : 0;
  if (!(amax >= kMinRowMax) || max_bits >= 0x7f800000u) {
    *scale = max_bits >= 0x7f800000u ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
    std::memset(q, zero, static_cast<size_t>(groups * 4));
    return;
  }
  const float inv = 127.0f / amax;
  *scale = amax / 127.0f;
  const int bias = shift ? 128 : 0;
  for (index k = 0; k < K; ++k) {
    const float v = std::min(std::max(std::nearbyint(x[k] * inv), -127.0f), 127.0f);
    q[k] = static_cast<std::uint8_t>(static_cast<int>(v) + bias);
  }
  std::memset(q + K, zero, static_cast<size_t>(groups * 4 - K));
}

// bfloat16 bits of x, rounded to nearest even (NaN stays NaN).
std::uint16_t to_bf16(float x) {
  const std::uint32_t bits = bits_of(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void round_row_bf16(index K, const float* x, index groups, std::uint8_t* out) {
  auto* q = reinterpret_cast<std::uint16_t*>(out);
  for (index k = 0; k < K; ++k) q[k] = to_bf16(x[k]);
  for (index k = K; k < 2 * groups; ++k) q[k] = 0;
}

float bf16_value(std::uint32_t bits16) { return float_of(bits16 << 16); }

// ---- dot products of this instruction set ----

struct ScalarInt8 {
  static constexpr bool kInt8 = true;
  static constexpr int kVecs = 1, kRows = 4, kPanels = 1, kPanelsOneRow = 2;
  struct Acc { std::int32_t v[16]; };
  struct Group { std::int32_t a[4]; };
  static Acc zero() { return Acc{}; }
  static Group group(const std::uint8_t* p) {
    return {{static_cast<std::int8_t>(p[0]), static_cast<std::int8_t>(p[1]), static_cast<std::int8_t>(p[2]),
             static_cast<std::int8_t>(p[3])}};
  }
  static const std::uint8_t* weights(const std::uint8_t* b) { return b; }
  static Acc dot(Acc acc, const Group& g, const std::uint8_t* b) {
    for (int j = 0; j < 16; ++j) {
      const auto* w = reinterpret_cast<const std::int8_t*>(b + 4 * j);
      acc.v[j] += g.a[0] * w[0] + g.a[1] * w[1] + g.a[2] * w[2] + g.a[3] * w[3];
    }
    return acc;
  }
  static void store(const Acc& acc, std::int32_t* out) { std::memcpy(out, acc.v, sizeof(acc.v)); }
};

struct ScalarBf16 {
  static constexpr bool kInt8 = false;
  static constexpr int kVecs = 1, kRows = 4, kPanels = 1, kPanelsOneRow = 2;
  struct Acc { float v[16]; };
  struct Group { float lo, hi; };
  static Acc zero() { return Acc{}; }
  static Group group(const std::uint8_t* p) {
    const std::uint32_t bits = static_cast<std::uint32_t>(load4(p));
    return {bf16_value(bits & 0xffffu), bf16_value(bits >> 16)};
  }
  static const std::uint8_t* weights(const std::uint8_t* b) { return b; }
  static Acc dot(Acc acc, const Group& g, const std::uint8_t* b) {
    for (int j = 0; j < 16; ++j) {
      const std::uint32_t bits = static_cast<std::uint32_t>(load4(b + 4 * j));
      acc.v[j] = std::fma(g.hi, bf16_value(bits >> 16), acc.v[j]);
      acc.v[j] = std::fma(g.lo, bf16_value(bits & 0xffffu), acc.v[j]);
    }
    return acc;
  }
  static void store(const Acc& acc, float* out) { std::memcpy(out, acc.v, sizeof(acc.v)); }
};

#if defined(PYRNN_ISA_avx2)
struct SimdInt8 {
  static constexpr bool kInt8 = true;
  static constexpr int kVecs = 2, kRows = 2, kPanels = 2, kPanelsOneRow = 4;
  using Acc = __m256i;
  struct Group { __m256i a, abs_a; };
  static Acc zero() { return _mm256_setzero_si256(); }
  static Group group(const std::uint8_t* p) {
    const __m256i a = _mm256_set1_epi32(load4(p));
    return {a, _mm256_abs_epi8(a)};
  }
  static __m256i weights(const std::uint8_t* b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)); }
  static Acc dot(Acc acc, const Group& g, __m256i b) {
    const __m256i w = _mm256_sign_epi8(b, g.a);
    const __m256i pairs = _mm256_maddubs_epi16(g.abs_a, w);
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
    return acc;
  }
  static void store(Acc acc, std::int32_t* out) { _mm256_store_si256(reinterpret_cast<__m256i*>(out), acc); }
};

struct SimdBf16 {
  static constexpr bool kInt8 = false;
  static constexpr int kVecs = 2, kRows = 2, kPanels = 2, kPanelsOneRow = 4;
  using Acc = __m256;
  struct Group { __m256 lo, hi; };
  static Acc zero() { return _mm256_setzero_ps(); }
  static __m256 low_half(__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
  static __m256 high_half(__m256i v) {
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static Group group(const std::uint8_t* p) {
    const __m256i a = _mm256_set1_epi32(load4(p));
    return {low_half(a), high_half(a)};
  }
  static __m256i weights(const std::uint8_t* b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)); }
  static Acc dot(Acc acc, const Group& g, __m256i w) {
    acc = _mm256_fmadd_ps(g.hi, high_half(w), acc);
    acc = _mm256_fmadd_ps(g.lo, low_half(w), acc);
    return acc;
  }
  static void store(Acc acc, float* out) { _mm256_store_ps(out, acc); }
};
#elif defined(PYRNN_ISA_avx512)
struct SimdInt8 {
  static constexpr bool kInt8 = true;
  static constexpr int kVecs = 1, kRows = 4, kPanels = 4, kPanelsOneRow = 8;
  using Acc = __m512i;
  struct Group { __m512i abs_a; __mmask64 negative; };
  static Acc zero() { return _mm512_setzero_si512(); }
  static Group group(const std::uint8_t* p) {
    const __m512i a = _mm512_set1_epi32(load4(p));
    return {_mm512_abs_epi8(a), _mm512_movepi8_mask(a)};
  }
  static __m512i weights(const std::uint8_t* b) { return _mm512_loadu_si512(b); }
  static Acc dot(Acc acc, const Group& g, __m512i w) {
    const __m512i signed_w = _mm512_mask_sub_epi8(w, g.negative, _mm512_setzero_si512(), w);
    const __m512i pairs = _mm512_maddubs_epi16(g.abs_a, signed_w);
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
    return acc;
  }
  static void store(Acc acc, std::int32_t* out) { _mm512_store_si512(out, acc); }
};

struct SimdBf16 {
  static constexpr bool kInt8 = false;
  static constexpr int kVecs = 1, kRows = 4, kPanels = 4, kPanelsOneRow = 8;
  using Acc = __m512;
  struct Group { __m512 lo, hi; };
  static Acc zero() { return _mm512_setzero_ps(); }
  static __m512 low_half(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
  static __m512 high_half(__m512i v) {
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static Group group(const std::uint8_t* p) {
    const __m512i a = _mm512_set1_epi32(load4(p));
    return {low_half(a), high_half(a)};
  }
  static __m512i weights(const std::uint8_t* b) { return _mm512_loadu_si512(b); }
  static Acc dot(Acc acc, const Group& g, __m512i w) {
    acc = _mm512_fmadd_ps(g.hi, high_half(w), acc);
    acc = _mm512_fmadd_ps(g.lo, low_half(w), acc);
    return acc;
  }
  static void store(Acc acc, float* out) { _mm512_store_ps(out, acc); }
};
#else
using SimdInt8 = ScalarInt8;
using SimdBf16 = ScalarBf16;
#endif

}  // namespace

void pack_quant_rows(QuantKind kind, bool native_dot, index K, index N, const void* const* rows,
                     const float* scales, QuantPanels& out) {
  const bool int8 = kind == QuantKind::Int8;
  const index per_group = int8 ? 4 : 2;
  const index panels = (N + kQuantPanel - 1) / kQuantPanel;
  out.kind = kind;
  out.native_dot = native_dot;
  out.K = K;
  out.N = N;
  out.groups = (K + per_group - 1) / per_group;
  const index bytes = panels * out.groups * 64;
  out.q.assign(int8 ? bytes : 0, 0);
  out.bf.assign(int8 ? 0 : bytes / 2, 0);
  out.scale.assign(panels * kQuantPanel, 0.0f);
  out.offset.assign(panels * kQuantPanel, 0);
  for (index j = 0; j < N; ++j) {
    const index p = j / kQuantPanel, lane = j % kQuantPanel;
    const index first = p * out.groups * 64 + lane * 4;  // byte of group 0 of column j
    std::int32_t sum = 0;
    for (index k = 0; k < K; ++k) {
      const index at = first + (k / per_group) * 64 + (k % per_group) * (4 / per_group);
      if (int8) {
        const std::int8_t w = static_cast<const std::int8_t*>(rows[j])[k];
        out.q[at] = w;
        sum += w;
      } else {
        out.bf[at / 2] = static_cast<const std::uint16_t*>(rows[j])[k];
      }
    }
    out.scale[j] = int8 ? scales[j] : 1.0f;
    out.offset[j] = int8 && native_dot ? 128 * sum : 0;
  }
}

void quant_gemm_packed(index M, index n_begin, index n_end, const float* A, index lda,
                       const QuantPanels& Bp, float beta, float* C, index ldc) {
  if (M <= 0 || n_end <= n_begin) return;
  const bool int8 = Bp.kind == QuantKind::Int8;
  const index groups = Bp.groups, row_bytes = groups * 4;
  auto* qa = thread_scratch<std::uint8_t>(Scratch::GemmStrips, M * row_bytes);
  float* sa = thread_scratch<float>(Scratch::GemmAccumulators, M);
  for (index m = 0; m < M; ++m) {
    if (int8) quantize_row_int8(Bp.K, A + m * lda, groups, Bp.native_dot, qa + m * row_bytes, sa + m);
    else round_row_bf16(Bp.K, A + m * lda, groups, qa + m * row_bytes);
  }
  const index first_panel = n_begin / kQuantPanel;
  const auto* b = int8 ? reinterpret_cast<const std::uint8_t*>(Bp.q.data())
                       : reinterpret_cast<const std::uint8_t*>(Bp.bf.data());
  b += first_panel * groups * 64;
  const index n = n_end - n_begin;
  const float* sw = Bp.scale.data() + n_begin;
  const std::int32_t* off = Bp.offset.data() + n_begin;
  float* c = C + n_begin;
#if defined(PYRNN_ISA_avx2) || defined(PYRNN_ISA_avx512)
  if (int8 && Bp.native_dot) return int8_product_dot(M, n, groups, qa, row_bytes, sa, b, sw, off, beta, c, ldc);
#endif
#if defined(PYRNN_ISA_avx512)
  if (!int8 && Bp.native_dot) return bf16_product_dot(M, n, groups, qa, row_bytes, sa, b, sw, off, beta, c, ldc);
#endif
  if (int8) quant_product<SimdInt8>(M, n, groups, qa, row_bytes, sa, b, sw, off, beta, c, ldc);
  else quant_product<SimdBf16>(M, n, groups, qa, row_bytes, sa, b, sw, off, beta, c, ldc);
}

}  // namespace pyrnn::PYRNN_ISA
