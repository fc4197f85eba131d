// bf16 GEMM on Intel AMX (tdpbf16ps): operands are rounded to bf16 while being packed into tiles of bf16 pairs
// (two consecutive k in each 32-bit word) and each 32 x 32 block of C is accumulated in four 16 x 16 fp32 tile
// registers. Built alone with -mamx-tile -mamx-bf16 (binding.gyp's sft_amx) and reached only through
// avx512::gemm when bf16_path() says so. With `emulate` the same packing and blocking run with the tile
// product computed by AVX-512 FMAs in the order of the instruction's definition (Intel's SDM: the even pair's
// product, then the odd one's, denormals flushed), so tests can check this path's layout on any AVX-512 CPU.
// GCC 12 reports the _mm512_undefined_* placeholders in its own headers as uninitialised (bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/avx512_util.h"
#include "kernels/gemm_driver.h"
#include "kernels/kernels.h"

namespace sft {
namespace amx {

namespace {

using gemm_driver::Problem;
using avx512_util::flush_denormals;
using avx512_util::hi_halves;
using avx512_util::mask16;
using avx512_util::pair_lanes;
using avx512_util::pick_pairs;
using avx512_util::round_bf16;
using avx512_util::transpose16;

// A tile holds 16 rows of 64 bytes: 16 rows x 16 pairs of A, 16 pairs x 16 columns of B, 16 x 16 fp32 of C.
// C blocks are 32 x 32 (tiles 0-3), fed by two A tiles (4, 5) and two B tiles (6, 7) per 16 pairs of K.
constexpr int T = 16;
constexpr int MR = 2 * T, NR = 2 * T;
// K blocks of 1024 values (512 pairs): an A panel is 64 KiB, a B panel 64 KiB, a B block (512 columns) 1 MiB.
constexpr int64_t KC = 1024, NB = 512, MB = MR * 8;

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Pairs of a K block, padded to whole tiles (the padding holds zeros, which add nothing).
inline int64_t pairs(int64_t kc) { return (kc + 2 * T - 1) / (2 * T) * T; }

// One pair word per lane from two rows of k (row0 = k even, row1 = k odd or null past the end).
inline __m512i pair_rows(const float* row0, const float* row1, __mmask16 m) {
  const __m512i lo = round_bf16(_mm512_maskz_loadu_ps(m, row0));
  const __m512i hi = row1 ? round_bf16(_mm512_maskz_loadu_ps(m, row1)) : _mm512_setzero_si512();
  return pair_lanes(lo, hi);
}

// Tiles of lines stored along k (line l at src + l*ld, `lines` of them valid, kc values each): for every
// 16 pairs q, dst[q*qstride + l*16 + w] = pair w of the block for line l. Lines past `lines`, and pairs past
// kc, are zeros. This is A's layout (rows of a tile) when lines are rows of A.
void lines_to_rows(const float* src, int64_t ld, int lines, int nlines, int64_t kc, int64_t kp, int64_t qstride, uint32_t* dst) {
  for (int l = 0; l < nlines; ++l) {
    const float* s = src + l * ld;
    for (int64_t q = 0; q * T < kp; ++q) {
      const int64_t k = q * 2 * T;
      __m512i w = _mm512_setzero_si512();
      if (l < lines) w = pick_pairs(round_bf16(_mm512_maskz_loadu_ps(mask16(kc - k), s + k)), round_bf16(_mm512_maskz_loadu_ps(mask16(kc - k - T), s + k + T)));
      _mm512_store_si512(dst + q * qstride + l * T, w);
    }
  }
}

// The same tiles from values stored across lines (line l of row k at src + k*ld + l, `lines` valid): 16 lines
// at a time, pairs built along the rows, then transposed so that each line's 16 pairs are contiguous.
void columns_to_rows(const float* src, int64_t ld, int lines, int nlines, int64_t kc, int64_t kp, int64_t qstride, uint32_t* dst) {
  for (int l0 = 0; l0 < nlines; l0 += T) {
    const __mmask16 m = mask16(lines - l0);
    for (int64_t q = 0; q * T < kp; ++q) {
      __m512i x[T];
      for (int w = 0; w < T; ++w) {
        const int64_t k = 2 * (q * T + w);
        x[w] = k < kc ? pair_rows(src + k * ld + l0, k + 1 < kc ? src + (k + 1) * ld + l0 : nullptr, m) : _mm512_setzero_si512();
      }
      transpose16(x);
      for (int l = 0; l < T; ++l) _mm512_store_si512(dst + q * qstride + (l0 + l) * T, x[l]);
    }
  }
}

// B tiles from values stored across columns (row k of op(B) at src + k*ld): dst[h*kp*16 + p*16 + c] = pair p
// of column h*16 + c, a tile being 16 consecutive pairs of one half.
void rows_to_pairs(const float* src, int64_t ld, int64_t width, int64_t kc, int64_t kp, uint32_t* dst) {
  for (int h = 0; h < 2; ++h) {
    const __mmask16 m = mask16(width - h * T);
    for (int64_t p = 0; p < kp; ++p) {
      const int64_t k = 2 * p;
      const __m512i w = k < kc ? pair_rows(src + k * ld + h * T, k + 1 < kc ? src + (k + 1) * ld + h * T : nullptr, m) : _mm512_setzero_si512();
      _mm512_store_si512(dst + h * kp * T + p * T, w);
    }
  }
}

// B tiles from columns stored along k (column c of op(B) at src + c*ld): 16 columns' pairs, transposed.
void lines_to_pairs(const float* src, int64_t ld, int64_t width, int64_t kc, int64_t kp, uint32_t* dst) {
  for (int h = 0; h < 2; ++h) {
    for (int64_t q = 0; q * T < kp; ++q) {
      const int64_t k = q * 2 * T;
      __m512i x[T];
      for (int c = 0; c < T; ++c) {
        const float* s = src + (h * T + c) * ld;
        x[c] = h * T + c < width ? pick_pairs(round_bf16(_mm512_maskz_loadu_ps(mask16(kc - k), s + k)), round_bf16(_mm512_maskz_loadu_ps(mask16(kc - k - T), s + k + T)))
                                 : _mm512_setzero_si512();
      }
      transpose16(x);
      for (int w = 0; w < T; ++w) _mm512_store_si512(dst + h * kp * T + (q * T + w) * T, x[w]);
    }
  }
}

// The palette-1 configuration of tiles 0-7: 16 rows of 64 bytes each.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// C (mv x nv of a 32 x 32 block, row stride ldc) = alpha * acc + beta * C; acc is 32 rows of 32 floats.
inline void write_block(const float* acc, float* c, int64_t ldc, int mv, int nv, float alpha, float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int r = 0; r < mv; ++r) {
    for (int h = 0; h < 2; ++h) {
      const __mmask16 m = mask16(nv - h * T);
      if (!m) continue;
      __m512 x = _mm512_mul_ps(_mm512_load_ps(acc + r * NR + h * T), va);
      if (beta != 0.f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + r * ldc + h * T), x);
      _mm512_mask_storeu_ps(c + r * ldc + h * T, m, x);
    }
  }
}

// acc (32 x 32) = A panel (32 rows x kp pairs, tiles of 16 x 16) times B panel (kp pairs x 32 columns).
template <bool kEmulate>
inline void block_product(int64_t kp, const uint32_t* a, const uint32_t* b, float* acc) {
  if constexpr (kEmulate) {
    for (int r = 0; r < MR; ++r) {
      for (int h = 0; h < 2; ++h) {
        __m512 s = _mm512_setzero_ps();
        for (int64_t p = 0; p < kp; ++p) {
          const uint32_t aw = a[(p / T) * MR * T + r * T + p % T];
          const __m512i bw = _mm512_load_si512(b + h * kp * T + p * T);
          const __m512 alo = flush_denormals(_mm512_set1_ps(bits_to_float(aw << 16)));
          const __m512 ahi = flush_denormals(_mm512_set1_ps(bits_to_float(aw & 0xFFFF0000u)));
          const __m512 blo = flush_denormals(_mm512_castsi512_ps(_mm512_slli_epi32(bw, 16)));
          const __m512 bhi = flush_denormals(_mm512_castsi512_ps(_mm512_and_si512(bw, hi_halves())));
          s = flush_denormals(_mm512_fmadd_ps(alo, blo, s));
          s = flush_denormals(_mm512_fmadd_ps(ahi, bhi, s));
        }
        _mm512_store_ps(acc + r * NR + h * T, s);
      }
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t q = 0; q * T < kp; ++q) {
      _tile_loadd(4, a + q * MR * T, 64);
      _tile_loadd(5, a + q * MR * T + T * T, 64);
      _tile_loadd(6, b + q * T * T, 64);
      _tile_loadd(7, b + kp * T + q * T * T, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, acc, NR * 4);
    _tile_stored(1, acc + T, NR * 4);
    _tile_stored(2, acc + T * NR, NR * 4);
    _tile_stored(3, acc + T * NR + T, NR * 4);
  }
}

template <bool kEmulate>
struct AmxPolicy {
  using Packed = uint32_t;
  static constexpr int MR = amx::MR, NR = amx::NR;
  static constexpr int64_t KC = amx::KC, NB = amx::NB, MB = amx::MB;
  static int64_t depth(int64_t kc) { return pairs(kc); }

  // Panels [pan0, pan1) of 32 rows of op(A) (rows [i0, i0 + mb), k [k0, k0 + kc)): panel q at dst + q*MR*kp,
  // tiles of 16 pairs one after another, each 32 rows x 16 pairs.
  static void pack_a(const Problem& p, int64_t i0, int64_t mb, int64_t k0, int64_t kc, int64_t pan0, int64_t pan1, uint32_t* dst) {
    const int64_t kp = depth(kc);
    for (int64_t q = pan0; q < pan1; ++q) {
      const int rows = static_cast<int>(std::min<int64_t>(MR, mb - q * MR));
      uint32_t* d = dst + q * MR * kp;
      if (p.trans_a) columns_to_rows(p.A + k0 * p.lda + i0 + q * MR, p.lda, rows, MR, kc, kp, MR * T, d);
      else lines_to_rows(p.A + (i0 + q * MR) * p.lda + k0, p.lda, rows, MR, kc, kp, MR * T, d);
    }
  }

  // Panels of 32 columns of op(B) (k [k0, k0 + kc), columns [j0, j0 + nb)): panel q at dst + q*NR*kp.
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t j0, int64_t nb, uint32_t* dst) {
    const int64_t kp = depth(kc), panels = (nb + NR - 1) / NR;
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t width = std::min<int64_t>(NR, nb - q * NR);
      uint32_t* d = dst + q * NR * kp;
      if (p.trans_b) lines_to_pairs(p.B + (j0 + q * NR) * p.ldb + k0, p.ldb, width, kc, kp, d);
      else rows_to_pairs(p.B + k0 * p.ldb + j0 + q * NR, p.ldb, width, kc, kp, d);
    }
  }

  static void macro_kernel(int64_t mb, int64_t nb, int64_t kc, int64_t pa0, int64_t pa1, const uint32_t* ap, const uint32_t* bp,
                           float* c, int64_t ldc, float alpha, float beta) {
    const int64_t kp = depth(kc), b_panels = (nb + NR - 1) / NR;
    alignas(64) float acc[MR * NR];
    if constexpr (!kEmulate) {
      // Each thread configures its own tiles for this block and releases them after (a released AMX state
      // costs nothing to save when the thread is switched out).
      TileConfig cfg;
      for (int t = 0; t < 8; ++t) {
        cfg.rows[t] = T;
        cfg.colsb[t] = 64;
      }
      _tile_loadconfig(&cfg);
    }
    for (int64_t ir = pa0; ir < pa1; ++ir) {
      const int mv = static_cast<int>(std::min<int64_t>(MR, mb - ir * MR));
      for (int64_t q = 0; q < b_panels; ++q) {
        const int nv = static_cast<int>(std::min<int64_t>(NR, nb - q * NR));
        block_product<kEmulate>(kp, ap + ir * MR * kp, bp + q * NR * kp, acc);
        write_block(acc, c + ir * MR * ldc + q * NR, ldc, mv, nv, alpha, beta);
      }
    }
    if constexpr (!kEmulate) _tile_release();
  }
};

}  // namespace

void gemm(const GemmArgs& g, bool emulate) {
  if (emulate) gemm_driver::run<AmxPolicy<true>>(g);
  else gemm_driver::run<AmxPolicy<false>>(g);
}

}  // namespace amx
}  // namespace sft
