// Low-precision frozen weights: NF4 (4-bit NormalFloat, block 64, with optional double quantization of the
// block scales, as QLoRA defines them) and int8 (per output channel). The exact rounding rules are written out
// in scripts/reference/quant_reference.py, whose fixtures these kernels match bit for bit.
#pragma once
#include <cstdint>

namespace sft::quant {

constexpr int64_t kNf4Block = 64;
constexpr int64_t kDqBlock = 256;

// The 16 NF4 values (QLoRA appendix E), ascending; code 7 is 0.0.
extern const float kNf4[16];
// The 256-entry signed dynamic map used for the double quantization of the scales, ascending.
const float* dynamic_map();

// x (n) -> packed (ceil(n/2) bytes, first element in the high nibble) and absmax (ceil(n/64)).
void nf4_quantize(const float* x, int64_t n, uint8_t* packed, float* absmax);
// Elements [start, start + count) of an NF4 tensor into out (count floats). Scales: absmax (one per block)
// when qabsmax is null; otherwise double-quantized: qabsmax (one code per block), absmax2 (one per 256
// blocks) and offset.
void nf4_dequantize(const uint8_t* packed, const float* absmax, const uint8_t* qabsmax, float offset,
                    int64_t start, int64_t count, float* out);
// The scale block b dequantizes with (absmax[b], or the double-quantized one): one function for every ISA's
// dequantization, so their scales are the same bits.
float nf4_block_scale(const float* absmax, const uint8_t* qabsmax, float offset, int64_t b);
// absmax (nb) -> codes (nb), absmax2 (ceil(nb/256)); returns the offset.
float dq_quantize(const float* absmax, int64_t nb, uint8_t* codes, float* absmax2);
// The scales a double-quantized tensor dequantizes with: out (nb).
void dq_dequantize(const uint8_t* codes, const float* absmax2, float offset, int64_t nb, float* out);

// w (rows, cols) -> q (rows, cols) and scale (rows) = absmax / 127.
void int8_quantize(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale);
// Rows [row0, row0 + rows) into out (rows, cols).
void int8_dequantize(const int8_t* q, const float* scale, int64_t row0, int64_t rows, int64_t cols, float* out);

}  // namespace sft::quant
