// Data movement kernels: embedding gather and its scatter-add backward, and the strided copy behind
// contiguous(), concat and slice assignment.
#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"

namespace sft {

namespace k {

namespace {

constexpr int64_t kGrain = 16384;

int64_t first_bad_id(const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab) return i;
  return -1;
}

}  // namespace

// weight (vocab, dim), ids (n) -> out (n, dim). Ids are all checked before anything is written.
int64_t embedding_fwd(const float* weight, const int32_t* ids, float* out, int64_t n, int64_t vocab, int64_t dim) {
  int64_t bad = first_bad_id(ids, n, vocab);
  if (bad >= 0) return bad;
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(dim, 1));
  parallel_for_grain(n, grain, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i)
      std::memcpy(out + i * dim, weight + static_cast<int64_t>(ids[i]) * dim, static_cast<size_t>(dim) * sizeof(float));
  });
  return -1;
}

// dweight (vocab, dim) += dout (n, dim) rows scattered by ids. Threads split the columns, and each walks
// the rows in order, so repeated ids accumulate in the same order at any thread count.
int64_t embedding_bwd(const int32_t* ids, const float* dout, float* dweight, int64_t n, int64_t vocab, int64_t dim) {
  int64_t bad = first_bad_id(ids, n, vocab);
  if (bad >= 0) return bad;
  int64_t grain = std::max<int64_t>(16, kGrain / std::max<int64_t>(n, 1));
  parallel_for_grain(dim, grain, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = 0; i < n; ++i) {
      const float* src = dout + i * dim;
      float* dst = dweight + static_cast<int64_t>(ids[i]) * dim;
      for (int64_t c = begin; c < end; ++c) dst[c] += src[c];
    }
  });
  return -1;
}

namespace {

// Drops size-1 dims and merges neighbours that are contiguous in both views.
int collapse(const int64_t* shape, const int64_t* ss, const int64_t* ds, int ndim, int64_t* sh, int64_t* s, int64_t* d) {
  int m = 0;
  for (int i = 0; i < ndim; ++i) {
    if (shape[i] == 1) continue;
    if (m > 0 && ss[i] * shape[i] == s[m - 1] && ds[i] * shape[i] == d[m - 1]) {
      sh[m - 1] *= shape[i];
      s[m - 1] = ss[i];
      d[m - 1] = ds[i];
      continue;
    }
    sh[m] = shape[i];
    s[m] = ss[i];
    d[m] = ds[i];
    ++m;
  }
  if (m == 0) {
    sh[0] = 1;
    s[0] = d[0] = 1;
    m = 1;
  }
  return m;
}

template <typename T, bool kAccumulate>
void copy_row(const T* src, int64_t ss, T* dst, int64_t ds, int64_t len) {
  if (ss == 1 && ds == 1) {
    if constexpr (kAccumulate) {
      for (int64_t t = 0; t < len; ++t) dst[t] += src[t];
    } else {
      std::memcpy(dst, src, static_cast<size_t>(len) * sizeof(T));
    }
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    if constexpr (kAccumulate) dst[t * ds] += src[t * ss];
    else dst[t * ds] = src[t * ss];
  }
}

template <typename T, bool kAccumulate>
void copy_nd(const T* src, T* dst, const int64_t* sh, const int64_t* ss, const int64_t* ds, int m) {
  int64_t total = 1;
  for (int i = 0; i < m; ++i) total *= sh[i];
  const int64_t inner = sh[m - 1];
  parallel_for_grain(total, kGrain, [&](int64_t begin, int64_t end, int) {
    int64_t idx[8];
    int64_t rem = begin / inner, offs = 0, offd = 0;
    for (int d = m - 2; d >= 0; --d) {
      idx[d] = rem % sh[d];
      rem /= sh[d];
      offs += idx[d] * ss[d];
      offd += idx[d] * ds[d];
    }
    int64_t j = begin % inner, pos = begin;
    while (pos < end) {
      int64_t len = std::min(inner - j, end - pos);
      copy_row<T, kAccumulate>(src + offs + j * ss[m - 1], ss[m - 1], dst + offd + j * ds[m - 1], ds[m - 1], len);
      pos += len;
      j = 0;
      for (int d = m - 2; d >= 0; --d) {
        offs += ss[d];
        offd += ds[d];
        if (++idx[d] < sh[d]) break;
        offs -= ss[d] * sh[d];
        offd -= ds[d] * sh[d];
        idx[d] = 0;
      }
    }
  });
}

// The last two dims form a transpose (src contiguous along dim m-2, dst along dim m-1): copy in square
// tiles so both sides touch few cache lines, instead of striding through src one element per line.
template <typename T, bool kAccumulate>
void copy_transposed(const T* src, T* dst, const int64_t* sh, const int64_t* ss, const int64_t* ds, int m) {
  constexpr int64_t kTile = 32;
  const int64_t R = sh[m - 2], C = sh[m - 1], src_c = ss[m - 1], dst_r = ds[m - 2];
  const int64_t tr = (R + kTile - 1) / kTile, tc = (C + kTile - 1) / kTile;
  int64_t outer = 1;
  for (int i = 0; i < m - 2; ++i) outer *= sh[i];
  parallel_for_grain(outer * tr * tc, std::max<int64_t>(1, kGrain / (kTile * kTile)), [&](int64_t begin, int64_t end, int) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t o = item / (tr * tc), t = item % (tr * tc);
      int64_t r0 = (t / tc) * kTile, c0 = (t % tc) * kTile;
      int64_t r1 = std::min(R, r0 + kTile), c1 = std::min(C, c0 + kTile);
      int64_t offs = 0, offd = 0;
      for (int d = m - 3; d >= 0; --d) {
        int64_t i = o % sh[d];
        o /= sh[d];
        offs += i * ss[d];
        offd += i * ds[d];
      }
      for (int64_t r = r0; r < r1; ++r) {
        const T* s = src + offs + r;
        T* dr = dst + offd + r * dst_r;
        for (int64_t c = c0; c < c1; ++c) {
          if constexpr (kAccumulate) dr[c] += s[c * src_c];
          else dr[c] = s[c * src_c];
        }
      }
    }
  });
}

template <typename T, bool kAccumulate>
void copy_any(const T* src, T* dst, const int64_t* sh, const int64_t* ss, const int64_t* ds, int m) {
  if (m >= 2 && ss[m - 2] == 1 && ds[m - 1] == 1 && ss[m - 1] != 1) copy_transposed<T, kAccumulate>(src, dst, sh, ss, ds, m);
  else copy_nd<T, kAccumulate>(src, dst, sh, ss, ds, m);
}

}  // namespace

void strided_copy(const void* src, const int64_t* src_strides, void* dst, const int64_t* dst_strides,
                  const int64_t* shape, int ndim, int elem_bytes, bool accumulate) {
  for (int i = 0; i < ndim; ++i)
    if (shape[i] == 0) return;
  int64_t sh[8], ss[8], ds[8];
  int m = collapse(shape, src_strides, dst_strides, ndim, sh, ss, ds);
  if (accumulate) {
    copy_any<float, true>(static_cast<const float*>(src), static_cast<float*>(dst), sh, ss, ds, m);
  } else if (elem_bytes == 4) {
    copy_any<uint32_t, false>(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), sh, ss, ds, m);
  } else if (elem_bytes == 2) {
    copy_any<uint16_t, false>(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), sh, ss, ds, m);
  } else {
    copy_any<uint8_t, false>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), sh, ss, ds, m);
  }
}

}  // namespace k

}  // namespace sft
