// Bit-exact number formats (semantics.md section 4): hand-computed golden values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/numeric.h"

namespace epcomm::core {
namespace {

TEST(Bf16, GoldenValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
}

TEST(Bf16, RoundsToNearestEven) {
  // 1 + 2^-8 lies halfway between 1 (even mantissa) and 1 + 2^-7: rounds down to 1.
  EXPECT_EQ(float_to_bf16(1.00390625f), 0x3f80);
  // 1 + 3*2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  EXPECT_EQ(float_to_bf16(1.01171875f), 0x3f82);
  // Just above the halfway point rounds up.
  EXPECT_EQ(float_to_bf16(std::nextafter(1.00390625f, 2.0f)), 0x3f81);
}

TEST(Bf16, NanStaysNanAndLargeOverflowsToInf) {
  const uint16_t nan = float_to_bf16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x007f, 0);
  EXPECT_EQ(float_to_bf16(3.4e38f), 0x7f80);  // rounds past the largest bf16
}

TEST(Bf16, RoundTripOfEveryFiniteBf16IsExact) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_float(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f), b) << "bits " << b;
  }
}

TEST(Fp8E4M3, GoldenValues) {
  EXPECT_EQ(float_to_fp8_e4m3(0.0f), 0x00);
  EXPECT_EQ(float_to_fp8_e4m3(-0.0f), 0x80);
  EXPECT_EQ(float_to_fp8_e4m3(1.0f), 0x38);          // exponent 7, mantissa 0
  EXPECT_EQ(float_to_fp8_e4m3(-1.5f), 0xbc);         // sign, exponent 7, mantissa 4
  EXPECT_EQ(float_to_fp8_e4m3(448.0f), 0x7e);        // largest finite
  EXPECT_EQ(float_to_fp8_e4m3(0.015625f), 0x08);     // 2^-6, smallest normal
  EXPECT_EQ(float_to_fp8_e4m3(0.001953125f), 0x01);  // 2^-9, smallest subnormal
  EXPECT_EQ(float_to_fp8_e4m3(0.013671875f), 0x07);  // 7 * 2^-9, largest subnormal
}

TEST(Fp8E4M3, SaturatesInsteadOfOverflowing) {
  EXPECT_EQ(float_to_fp8_e4m3(449.0f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(470.0f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(1e30f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(-1e30f), 0xfe);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
}

TEST(Fp8E4M3, NanMapsToTheNanPattern) {
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0xff)));
}

TEST(Fp8E4M3, RoundsToNearestEvenInNormalRange) {
  // 1.0625 lies halfway between 1.0 (mantissa 0, even) and 1.125 (mantissa 1): rounds to 1.0.
  EXPECT_EQ(float_to_fp8_e4m3(1.0625f), 0x38);
  // 1.1875 lies halfway between 1.125 (odd) and 1.25 (even): rounds to 1.25.
  EXPECT_EQ(float_to_fp8_e4m3(1.1875f), 0x3a);
  // 15.5 lies halfway between 15 (1.875*8, odd) and 16 (even, next binade): rounds to 16.
  EXPECT_EQ(float_to_fp8_e4m3(15.5f), 0x58);
  // 432 lies halfway between 416 (odd mantissa 5) and 448 (mantissa 6): rounds to 448.
  EXPECT_EQ(float_to_fp8_e4m3(432.0f), 0x7e);
  // 424 is nearer 416: stays below the maximum.
  EXPECT_EQ(float_to_fp8_e4m3(424.0f), 0x7d);
}

TEST(Fp8E4M3, RoundsToNearestEvenInSubnormalRange) {
  EXPECT_EQ(float_to_fp8_e4m3(0.0009765625f), 0x00);  // 2^-10: halfway 0 / 2^-9, to even 0
  EXPECT_EQ(float_to_fp8_e4m3(0.0029296875f), 0x02);  // 1.5 * 2^-9: halfway 1 / 2, to even 2
  EXPECT_EQ(float_to_fp8_e4m3(0.0048828125f), 0x02);  // 2.5 * 2^-9: halfway 2 / 3, to even 2
  EXPECT_EQ(float_to_fp8_e4m3(0.0146484375f), 0x08);  // 7.5 * 2^-9: rounds up into 2^-6
  EXPECT_EQ(float_to_fp8_e4m3(1e-30f), 0x00);
}

TEST(Fp8E4M3, EveryCodeRoundTrips) {
  for (uint32_t b = 0; b < 256; ++b) {
    const float f = fp8_e4m3_to_float(static_cast<uint8_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp8_e4m3(f), b) << "code " << b << " value " << f;
  }
}

TEST(Fp8E4M3, ConversionIsMonotonic) {
  float prev = -448.0f;
  for (float f = -500.0f; f <= 500.0f; f += 0.37f) {
    const float q = fp8_e4m3_to_float(float_to_fp8_e4m3(f));
    ASSERT_GE(q, prev) << f;
    prev = q;
  }
}

TEST(Fp8Scale, ClampsAmaxBelowAt1eMinus4) {
  EXPECT_FLOAT_EQ(fp8_scale_from_amax(0.0f, false), 1e-4f / 448.0f);
  EXPECT_FLOAT_EQ(fp8_scale_from_amax(448.0f, false), 1.0f);
  EXPECT_FLOAT_EQ(fp8_scale_from_amax(2.0f, false), 2.0f / 448.0f);
}

TEST(Fp8Scale, RoundScaleGivesTheNextPowerOfTwo) {
  EXPECT_EQ(fp8_scale_from_amax(448.0f, true), 1.0f);  // exactly 1: unchanged
  EXPECT_EQ(fp8_scale_from_amax(449.0f, true), 2.0f);  // just above 1: next power
  EXPECT_EQ(fp8_scale_from_amax(224.0f, true), 0.5f);
  EXPECT_EQ(fp8_scale_from_amax(3.0f, true), 0.0078125f);  // 3/448 = 0.0067 -> 2^-7
  for (float amax : {1e-5f, 0.3f, 7.0f, 1000.0f}) {
    const float s = fp8_scale_from_amax(amax, true);
    int exp = 0;
    EXPECT_EQ(std::frexp(s, &exp), 0.5f) << amax;  // a power of two
    EXPECT_GE(s, fp8_scale_from_amax(amax, false));
    EXPECT_LT(s, 2 * fp8_scale_from_amax(amax, false));
  }
}

TEST(Fp8Scale, Ue8m0IsTheBiasedExponent) {
  EXPECT_EQ(ue8m0_from_scale(1.0f), 127);
  EXPECT_EQ(ue8m0_from_scale(0.0078125f), 120);
  EXPECT_EQ(ue8m0_from_scale(2.0f), 128);
  EXPECT_EQ(scale_from_ue8m0(120), 0.0078125f);
}

TEST(Fp8Scale, QuantizedGroupStaysWithinHalfAnUlpOfTheScaledValue) {
  // FP8 round trip within the format's error: relative error <= 2^-4 for normal values.
  const float scale = fp8_scale_from_amax(3.7f, false);
  for (float x = -3.7f; x <= 3.7f; x += 0.013f) {
    const float back = fp8_e4m3_to_float(fp8_quantize(x, scale)) * scale;
    if (std::fabs(x / scale) >= 0.015625f) {
      EXPECT_LE(std::fabs(back - x), std::fabs(x) * 0.0625f + 1e-7f) << x;
    } else {
      EXPECT_LE(std::fabs(back - x), 0.001953125f * scale) << x;  // subnormal step
    }
  }
}

}  // namespace
}  // namespace epcomm::core
