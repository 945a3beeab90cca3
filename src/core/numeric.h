// Number formats shared bit-exactly by the CPU reference and the kernels (semantics.md 4):
// float32 <-> bfloat16 and float8_e4m3fn with round-to-nearest-even and saturation, and the
// per-128-channel FP8 scale rules (amax clamp, round_scale, UE8M0 exponent bytes).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace epcomm::core {

constexpr int kFp8GroupSize = 128;      // channels per FP8 scale
constexpr float kFp8E4M3Max = 448.0f;   // largest finite float8_e4m3fn
constexpr float kFp8AmaxFloor = 1e-4f;  // amax is clamped below at this value

EPCOMM_HOST_DEVICE uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

EPCOMM_HOST_DEVICE float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

// float32 -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN.
EPCOMM_HOST_DEVICE uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  const uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

EPCOMM_HOST_DEVICE float bf16_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

// float32 -> float8_e4m3fn bits, round to nearest even, saturating: every finite magnitude
// >= 448 and infinity become +-448; NaN becomes 0x7f with the sign kept.
EPCOMM_HOST_DEVICE uint8_t float_to_fp8_e4m3(float f) {
  const uint32_t u = float_bits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7f;
  if (a >= 0x43e00000u) return sign | 0x7e;  // >= 448
  const int exp = static_cast<int>(a >> 23) - 127;
  if (exp < -11) return sign;  // below a quarter of the smallest subnormal (2^-9): rounds to 0
  const int e = exp < -6 ? -6 : exp;  // e4m3 exponent of the result's binade (subnormals: -6)
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  // n = value / 2^(e-3), the result in units of its quantum; value = mant * 2^(exp-23).
  const int shift = e - exp + 20;  // in [20, 25]
  uint32_t n = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (n & 1u))) ++n;
  if (n == 0) return sign;
  if (e == -6 && n < 8) return sign | static_cast<uint8_t>(n);  // subnormal
  int e_out = e;
  if (n == 16) {  // rounded up into the next binade
    n = 8;
    ++e_out;
  }
  return sign | static_cast<uint8_t>(((e_out + 7) << 3) | (n - 8));
}

EPCOMM_HOST_DEVICE float fp8_e4m3_to_float(uint8_t b) {
  const uint32_t sign = (b & 0x80u) ? 0x80000000u : 0u;
  const uint32_t e = (b >> 3) & 0xfu;
  const uint32_t m = b & 0x7u;
  if (e == 0xfu && m == 0x7u) return bits_float(sign | 0x7fc00000u);
  if (e == 0) {  // subnormal: m * 2^-9
    const float v = static_cast<float>(m) * (1.0f / 512.0f);
    return sign ? -v : v;
  }
  return bits_float(sign | ((e - 7 + 127) << 23) | (m << 20));
}

// Scale of one 128-channel group from its amax (float32): amax clamped below at 1e-4,
// scale = amax / 448; with round_scale the scale is rounded up to a power of two.
EPCOMM_HOST_DEVICE float fp8_scale_from_amax(float amax, bool round_scale) {
  const float clamped = amax < kFp8AmaxFloor ? kFp8AmaxFloor : amax;
  const float scale = clamped / kFp8E4M3Max;
  if (!round_scale) return scale;
  // 2^ceil(log2(scale)) on the bits: keep the exponent, bump it if any mantissa bit is set.
  const uint32_t u = float_bits(scale);
  uint32_t exp_bits = u & 0x7f800000u;
  if (u & 0x007fffffu) exp_bits += 0x00800000u;
  return bits_float(exp_bits);
}

// Biased exponent byte of a power-of-two scale (UE8M0).
EPCOMM_HOST_DEVICE uint8_t ue8m0_from_scale(float scale) {
  return static_cast<uint8_t>((float_bits(scale) >> 23) & 0xffu);
}

EPCOMM_HOST_DEVICE float scale_from_ue8m0(uint8_t byte) {
  return bits_float(static_cast<uint32_t>(byte) << 23);
}

// q = float8_e4m3fn(x / scale): the quantisation every FP8 path uses.
EPCOMM_HOST_DEVICE uint8_t fp8_quantize(float x, float scale) {
  return float_to_fp8_e4m3(x / scale);
}

}  // namespace epcomm::core
