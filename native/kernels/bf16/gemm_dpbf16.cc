// bf16 GEMM on CPUs with AVX512_BF16: operands are rounded to bf16 while being packed into panels of bf16
// pairs (two consecutive k of one row or column in each 32-bit word), and the micro-kernel multiplies them
// with vdpbf16ps, accumulating in fp32. Built alone with -mavx512bf16 (binding.gyp's sft_avx512bf16) and
// reached only through avx512::gemm when bf16_path() says so, so no other code ever runs these instructions.
// With `emulate` the same packing and loop nest run with vdpbf16ps replaced by its definition (two fp32 FMAs on
// the widened halves, high pair first, denormals flushed), bit for bit what the instruction gives: tests use it
// to check this path on CPUs that lack the instruction, and against the instruction where the CPU has it.
// GCC 12 reports the _mm512_undefined_* placeholders in its own headers as uninitialised (bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/avx512_util.h"
#include "kernels/gemm_driver.h"
#include "kernels/kernels.h"

namespace sft {
namespace avx512bf16 {

namespace {

using gemm_driver::Problem;

// Register tile MR x NR (two zmm of 16 fp32 lanes): 28 accumulators + 2 B vectors + 1 broadcast of 32 zmm.
// K blocks hold KC values = KC/2 pairs, so the A micro-panel (14 x 512 words = 28 KiB) stays in a 48 KiB L1
// and a B block (512 pairs x 512 columns = 1 MiB) in a 2 MiB L2, the same bytes as the fp32 kernel's blocks.
constexpr int MR = 14, NV = 2, W = 16;
constexpr int NR = NV * W;
constexpr int64_t KC = 1024, NB = 512, MB = MR * 256;

using avx512_util::flush_denormals;
using avx512_util::hi_halves;
using avx512_util::mask16;
using avx512_util::pair_lanes;
using avx512_util::pick_pairs;
using avx512_util::round_bf16;
using avx512_util::transpose16;

// Packing writes micro-panels of R words per pair: panel q holds pair p of line r at q*R*kp + p*R + r, with
// k = 2p in the low half of the word and k = 2p + 1 in the high half (vdpbf16ps pairs halves of equal
// position); lanes past the matrix edge and the odd k past kc are zero.

// Source lines stored along k (line r at src + r*ld): dst[p*R + r] = pair(src[r*ld + 2p], src[r*ld + 2p + 1]).
// The pairs of a line are adjacent in memory: 32 values become 16 words (the high halves picked by one
// permute), then 16 lines are transposed in registers.
template <int R>
void pack_lines(const float* src, int64_t ld, int rv, int64_t kc, uint32_t* dst) {
  for (int64_t kb = 0; kb < kc; kb += 2 * W) {
    const int64_t kn = std::min<int64_t>(2 * W, kc - kb);
    const int64_t pn = (kn + 1) / 2;
    for (int rb = 0; rb < R; rb += W) {
      const int lanes = std::min(W, R - rb);
      __m512i x[W];
      for (int i = 0; i < W; ++i) {
        const int r = rb + i;
        if (r >= rv || r >= R) {
          x[i] = _mm512_setzero_si512();
          continue;
        }
        const float* s = src + r * ld + kb;
        const __m512i lo = round_bf16(_mm512_maskz_loadu_ps(mask16(kn), s));
        const __m512i hi = round_bf16(_mm512_maskz_loadu_ps(mask16(kn - W), s + W));
        x[i] = pick_pairs(lo, hi);
      }
      transpose16(x);
      uint32_t* d = dst + (kb / 2) * R + rb;
      for (int64_t p = 0; p < pn; ++p) _mm512_mask_storeu_epi32(d + p * R, mask16(lanes), x[p]);
    }
  }
}

// Source rows stored along the panel width (row k at src + k*ld, `width` valid values): panels [0, panels)
// of R columns, dst[q*R*kp + p*R + r] = pair(src[2p*ld + q*R + r], src[(2p + 1)*ld + q*R + r]).
template <int R>
void pack_rows(const float* src, int64_t ld, int64_t width, int64_t kc, int64_t panels, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t p = 0; p < kp; ++p) {
    const float* row0 = src + 2 * p * ld;
    const float* row1 = 2 * p + 1 < kc ? row0 + ld : nullptr;
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t cols = std::min<int64_t>(R, width - q * R);
      uint32_t* d = dst + q * R * kp + p * R;
      for (int o = 0; o < R; o += W) {
        const __mmask16 m = mask16(cols - o);
        const __m512i lo = round_bf16(_mm512_maskz_loadu_ps(m, row0 + q * R + o));
        const __m512i hi = row1 ? round_bf16(_mm512_maskz_loadu_ps(m, row1 + q * R + o)) : _mm512_setzero_si512();
        const __m512i w = pair_lanes(lo, hi);
        _mm512_mask_storeu_epi32(d + o, mask16(R - o), w);
      }
    }
  }
}

// acc += the dot products of the bf16 pairs of a (broadcast) and b: vdpbf16ps, or its emulation. The emulation
// follows the instruction's definition in Intel's SDM step for step: the odd (high) pair's product is added
// first, then the even one's, each a fused multiply-add rounded to nearest even (the products of two bf16 are
// exact in fp32), with denormal inputs and results flushed. On CPUs with the instruction the two agree bit for
// bit (test/native/gemm-bf16.test.ts), so the emulated path shows on any AVX-512 CPU what the real one computes.
template <bool kEmulate>
inline __m512 dot_pairs(__m512 acc, __m512i a, __m512i b) {
  if constexpr (kEmulate) {
    const __m512 alo = flush_denormals(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)));
    const __m512 ahi = flush_denormals(_mm512_castsi512_ps(_mm512_and_si512(a, hi_halves())));
    const __m512 blo = flush_denormals(_mm512_castsi512_ps(_mm512_slli_epi32(b, 16)));
    const __m512 bhi = flush_denormals(_mm512_castsi512_ps(_mm512_and_si512(b, hi_halves())));
    const __m512 odd = flush_denormals(_mm512_fmadd_ps(ahi, bhi, flush_denormals(acc)));
    return flush_denormals(_mm512_fmadd_ps(alo, blo, odd));
  } else {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
  }
}

// C tile (mv x nv) = alpha * a_panel (MR x kp pairs) * b_panel (kp pairs x NR) + beta * C; beta == 0 writes
// without reading C.
template <bool kFull, bool kEmulate>
inline void micro_kernel(int64_t kp, const uint32_t* __restrict a, const uint32_t* __restrict b, float* c, int64_t ldc,
                         float alpha, float beta, int mv, int nv) {
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int r = 0; r < MR; ++r) {
    if (!kFull && r >= mv) break;
    for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + v * W), _MM_HINT_T0);
  }
  for (int64_t p = 0; p < kp; ++p) {
    __m512i bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + v * W);
#pragma GCC unroll 14
    for (int r = 0; r < MR; ++r) {
      const __m512i ar = _mm512_set1_epi32(static_cast<int>(a[r]));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = dot_pairs<kEmulate>(acc[r][v], ar, bv[v]);
    }
    a += MR;
    b += NR;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const bool read_c = beta != 0.f;
  for (int r = 0; r < MR; ++r) {
    if (!kFull && r >= mv) break;
    float* cr = c + r * ldc;
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = kFull ? (__mmask16)0xFFFF : mask16(nv - v * W);
      if (!m) continue;
      __m512 x = _mm512_mul_ps(acc[r][v], va);
      if (read_c) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, cr + v * W), x);
      _mm512_mask_storeu_ps(cr + v * W, m, x);
    }
  }
}

template <bool kEmulate>
struct Bf16Policy {
  using Packed = uint32_t;
  static constexpr int MR = avx512bf16::MR, NR = avx512bf16::NR;
  static constexpr int64_t KC = avx512bf16::KC, NB = avx512bf16::NB, MB = avx512bf16::MB;
  static int64_t depth(int64_t kc) { return (kc + 1) / 2; }

  // Micro-panels [pan0, pan1) of rows [i0, i0 + mb) x k [k0, k0 + kc) of op(A).
  static void pack_a(const Problem& p, int64_t i0, int64_t mb, int64_t k0, int64_t kc, int64_t pan0, int64_t pan1, uint32_t* dst) {
    const int64_t kp = depth(kc);
    if (p.trans_a) {
      pack_rows<MR>(p.A + k0 * p.lda + i0 + pan0 * MR, p.lda, mb - pan0 * MR, kc, pan1 - pan0, dst + pan0 * MR * kp);
    } else {
      for (int64_t q = pan0; q < pan1; ++q) {
        const int rv = static_cast<int>(std::min<int64_t>(MR, mb - q * MR));
        pack_lines<MR>(p.A + (i0 + q * MR) * p.lda + k0, p.lda, rv, kc, dst + q * MR * kp);
      }
    }
  }

  // k [k0, k0 + kc) x columns [j0, j0 + nb) of op(B) in NR-column micro-panels.
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t j0, int64_t nb, uint32_t* dst) {
    const int64_t kp = depth(kc), panels = (nb + NR - 1) / NR;
    if (!p.trans_b) {
      pack_rows<NR>(p.B + k0 * p.ldb + j0, p.ldb, nb, kc, panels, dst);
    } else {
      for (int64_t q = 0; q < panels; ++q) {
        const int rv = static_cast<int>(std::min<int64_t>(NR, nb - q * NR));
        pack_lines<NR>(p.B + (j0 + q * NR) * p.ldb + k0, p.ldb, rv, kc, dst + q * NR * kp);
      }
    }
  }

  static void macro_kernel(int64_t mb, int64_t nb, int64_t kc, int64_t pa0, int64_t pa1, const uint32_t* ap, const uint32_t* bp,
                           float* c, int64_t ldc, float alpha, float beta) {
    const int64_t kp = depth(kc), b_panels = (nb + NR - 1) / NR;
    for (int64_t ir = pa0; ir < pa1; ++ir) {
      const int mv = static_cast<int>(std::min<int64_t>(MR, mb - ir * MR));
      const uint32_t* a = ap + ir * MR * kp;
      for (int64_t q = 0; q < b_panels; ++q) {
        const int nv = static_cast<int>(std::min<int64_t>(NR, nb - q * NR));
        float* ct = c + ir * MR * ldc + q * NR;
        if (mv == MR && nv == NR) micro_kernel<true, kEmulate>(kp, a, bp + q * NR * kp, ct, ldc, alpha, beta, MR, NR);
        else micro_kernel<false, kEmulate>(kp, a, bp + q * NR * kp, ct, ldc, alpha, beta, mv, nv);
      }
    }
  }
};

}  // namespace

void gemm(const GemmArgs& g, bool emulate) {
  if (emulate) gemm_driver::run<Bf16Policy<true>>(g);
  else gemm_driver::run<Bf16Policy<false>>(g);
}

}  // namespace avx512bf16
}  // namespace sft
