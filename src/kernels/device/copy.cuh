// Vector copies for moving rows: 16-byte accesses, several loads in flight per lane.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

// Read-only, not kept in L1 (rows are read once).
__device__ __forceinline__ int4 ld_nc_v4(const int4* ptr) {
  int4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(ptr));
  return v;
}

// Read-only scalar, issued as written (volatile), so it stays ahead of the copies that follow.
__device__ __forceinline__ float ld_nc_f32(const float* ptr) {
  float v;
  asm volatile("ld.global.nc.f32 %0, [%1];" : "=f"(v) : "l"(ptr));
  return v;
}

// Coherent load (data written by peers during this kernel, after an acquire), not kept in L1.
__device__ __forceinline__ int4 ld_na_v4(const int4* ptr) {
  int4 v;
  asm volatile("ld.global.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(ptr)
               : "memory");
  return v;
}

// Coherent scalar load (data written by peers during this kernel, after an acquire).
__device__ __forceinline__ float ld_na_f32(const float* ptr) {
  float v;
  asm volatile("ld.global.L1::no_allocate.f32 %0, [%1];" : "=f"(v) : "l"(ptr) : "memory");
  return v;
}

__device__ __forceinline__ void st_na_v4(int4* ptr, const int4& v) {
  asm volatile("st.global.L1::no_allocate.v4.s32 [%0], {%1, %2, %3, %4};" ::"l"(ptr), "r"(v.x),
               "r"(v.y), "r"(v.z), "r"(v.w));
}

constexpr int kCopyUnroll = 8;  // 128 bytes in flight per lane

// Warp copies `num_vec` 16-byte vectors from src to dst. kCoherent: src was written by peers
// during this kernel (use coherent loads); otherwise src is read-only for the kernel. Every pass
// issues its kCopyUnroll loads (predicated at the end of the row) before any store, so a row's
// tail costs one memory latency, not one per vector.
template <bool kCoherent>
__device__ __forceinline__ void warp_copy(int4* dst, const int4* src, int64_t num_vec, int lane) {
  for (int64_t i = lane; i < num_vec; i += kCopyUnroll * 32) {
    int4 v[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u)
      if (i + u * 32 < num_vec)
        v[u] = kCoherent ? ld_na_v4(src + i + u * 32) : ld_nc_v4(src + i + u * 32);
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u)
      if (i + u * 32 < num_vec) st_na_v4(dst + i + u * 32, v[u]);
  }
}

// Warp copies one row to `num_dst` destinations, reading it once (loads as in warp_copy).
template <bool kCoherent>
__device__ __forceinline__ void warp_multicast_copy(int4* const* dst, int num_dst, const int4* src,
                                                    int64_t num_vec, int lane) {
  for (int64_t i = lane; i < num_vec; i += kCopyUnroll * 32) {
    int4 v[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u)
      if (i + u * 32 < num_vec)
        v[u] = kCoherent ? ld_na_v4(src + i + u * 32) : ld_nc_v4(src + i + u * 32);
    for (int d = 0; d < num_dst; ++d)
#pragma unroll
      for (int u = 0; u < kCopyUnroll; ++u)
        if (i + u * 32 < num_vec) st_na_v4(dst[d] + i + u * 32, v[u]);
  }
}

}  // namespace epcomm::kernels
