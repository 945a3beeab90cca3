// Eight BF16 channels in one 16-byte vector, summed in float32: the combine kernels' arithmetic.
#pragma once

#include <cuda_bf16.h>

namespace epcomm::kernels {

// acc[i] += channel i of v.
__device__ __forceinline__ void add_bf16x8(float* acc, const int4& v) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    acc[2 * i] += f.x;
    acc[2 * i + 1] += f.y;
  }
}

// acc[i] += w * channel i of v.
__device__ __forceinline__ void add_weighted_bf16x8(float* acc, float w, const int4& v) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    acc[2 * i] += w * f.x;
    acc[2 * i + 1] += w * f.y;
  }
}

// The eight sums rounded once to BF16 (round to nearest even).
__device__ __forceinline__ int4 round_bf16x8(const float* acc) {
  int4 out;
  auto* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
  return out;
}

}  // namespace epcomm::kernels
