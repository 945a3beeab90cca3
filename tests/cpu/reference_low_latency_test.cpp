// CPU reference of the low-latency dispatch and combine (semantics.md sections 4-5).
// Comparisons go through src_info and layout_range, never by row position.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "common/moe_data.h"

namespace epcomm::testing {
namespace {

using reference::SimWorld;

struct LowLatencyOutputs {
  HostTensor recv_x, scales, count, src_info, layout_range, stats;
  LowLatencyHandle handle(int32_t n_max, int32_t hidden, int32_t num_experts) const {
    return LowLatencyHandle{src_info.view(), layout_range.view(), n_max, hidden, num_experts};
  }
};

struct LowLatencyCase {
  int32_t R = 3, N_max = 12, H = 512, E = 12;
  int64_t K = 4;
  bool fp8 = true, round_scale = false, ue8m0 = false;
  std::vector<int64_t> tokens = {12, 0, 7};
  int32_t hot_expert = -1;
};

std::vector<LowLatencyOutputs> run_ll_dispatch(const SimWorld& world, const LowLatencyCase& c,
                                               std::vector<RankInputs>* inputs_out,
                                               Error* error = nullptr) {
  const int32_t R = c.R;
  const int64_t E_local = c.E / R, rows = int64_t{R} * c.N_max;
  std::vector<RankInputs> inputs;
  std::vector<LowLatencyOutputs> outs(R);
  std::vector<LowLatencyDispatchArgs> args(R);
  for (int32_t r = 0; r < R; ++r) {
    InputSpec spec;
    spec.num_tokens = c.tokens[r];
    spec.hidden = c.H;
    spec.topk = c.K;
    spec.num_experts = c.E;
    spec.hot_expert = c.hot_expert;
    inputs.push_back(make_inputs(spec, r, 31));
    auto& o = outs[r];
    o.recv_x = HostTensor(c.fp8 ? DType::kFloat8E4M3 : DType::kBFloat16, {E_local, rows, c.H});
    if (c.fp8)
      o.scales = HostTensor::column_major_last2(c.ue8m0 ? DType::kInt32 : DType::kFloat32,
                                                {E_local, rows, c.ue8m0 ? c.H / 512 : c.H / 128});
    o.count = HostTensor(DType::kInt32, {E_local});
    o.src_info = HostTensor(DType::kInt32, {E_local, rows});
    o.layout_range = HostTensor(DType::kInt64, {E_local, R});
    o.stats = HostTensor(DType::kInt32, {E_local});
    auto& a = args[r];
    a.x = inputs[r].x.view();
    a.topk_idx = inputs[r].topk_idx.view();
    a.num_max_dispatch_tokens_per_rank = c.N_max;
    a.num_experts = c.E;
    a.use_fp8 = c.fp8;
    a.round_scale = c.round_scale;
    a.use_ue8m0 = c.ue8m0;
    a.cumulative_local_expert_recv_stats = o.stats.view();
    a.packed_recv_x = o.recv_x.view();
    if (c.fp8) a.packed_recv_x_scales = o.scales.view();
    a.packed_recv_count = o.count.view();
    a.handle = o.handle(c.N_max, c.H, c.E);
  }
  const Error e = world.low_latency_dispatch(args);
  if (error) {
    *error = e;
  } else {
    EXPECT_TRUE(e.ok()) << e.to_string();
  }
  *inputs_out = std::move(inputs);
  return outs;
}

// For each (destination, local expert, source rank) the set of tokens must be exactly those
// that selected the expert, and the ranges must tile [0, count).
void check_routing(const LowLatencyCase& c, const std::vector<RankInputs>& in,
                   const std::vector<LowLatencyOutputs>& outs) {
  const int64_t E_local = c.E / c.R;
  for (int32_t d = 0; d < c.R; ++d)
    for (int64_t j = 0; j < E_local; ++j) {
      int64_t covered = 0;
      for (int32_t s = 0; s < c.R; ++s) {
        const int64_t range = outs[d].layout_range.at<int64_t>({j, s});
        const int64_t begin = range >> 32, count = range & 0xffffffff;
        covered += count;
        std::set<int> got, want;
        for (int64_t i = begin; i < begin + count; ++i)
          got.insert(outs[d].src_info.at<int32_t>({j, i}));
        for (int64_t t = 0; t < c.tokens[s]; ++t)
          for (int64_t k = 0; k < c.K; ++k)
            if (in[s].topk_idx.at<int64_t>({t, k}) == d * E_local + j)
              want.insert(static_cast<int>(t));
        EXPECT_EQ(got, want) << "dst " << d << " expert " << j << " src " << s;
      }
      EXPECT_EQ(covered, outs[d].count.at<int32_t>({j}));
      EXPECT_EQ(outs[d].stats.at<int32_t>({j}), outs[d].count.at<int32_t>({j}));
    }
}

// The row of (source s, token t) in local expert j of destination d, or -1.
int64_t find_row(const LowLatencyOutputs& o, int64_t j, int32_t s, int64_t t) {
  const int64_t range = o.layout_range.at<int64_t>({j, s});
  for (int64_t i = range >> 32; i < (range >> 32) + (range & 0xffffffff); ++i)
    if (o.src_info.at<int32_t>({j, i}) == t) return i;
  return -1;
}

TEST(ReferenceLowLatency, RoutingCountsAndRangesBf16) {
  SimWorld world(3);
  LowLatencyCase c;
  c.fp8 = false;
  std::vector<RankInputs> in;
  auto outs = run_ll_dispatch(world, c, &in);
  check_routing(c, in, outs);
  // BF16 rows are exact copies.
  for (int32_t d = 0; d < c.R; ++d)
    for (int64_t j = 0; j < c.E / c.R; ++j)
      for (int32_t s = 0; s < c.R; ++s)
        for (int64_t t = 0; t < c.tokens[s]; ++t) {
          const int64_t row = find_row(outs[d], j, s, t);
          if (row < 0) continue;
          for (int64_t h = 0; h < c.H; ++h)
            ASSERT_EQ(outs[d].recv_x.at<uint16_t>({j, row, h}), in[s].x.at<uint16_t>({t, h}));
        }
}

TEST(ReferenceLowLatency, Fp8RowsDequantizeWithinTheFormatError) {
  SimWorld world(3);
  LowLatencyCase c;
  std::vector<RankInputs> in;
  auto outs = run_ll_dispatch(world, c, &in);
  check_routing(c, in, outs);
  for (int32_t s = 0; s < c.R; ++s)
    for (int64_t t = 0; t < c.tokens[s]; ++t) {
      const int64_t e = in[s].topk_idx.at<int64_t>({t, 0});
      if (e < 0) continue;
      const int32_t d = static_cast<int32_t>(e / (c.E / c.R));
      const int64_t j = e % (c.E / c.R);
      const int64_t row = find_row(outs[d], j, s, t);
      ASSERT_GE(row, 0);
      for (int64_t g = 0; g < c.H / 128; ++g) {
        float amax = 0;
        for (int64_t h = g * 128; h < (g + 1) * 128; ++h)
          amax = std::fmax(amax, std::fabs(f32(in[s].x.at<uint16_t>({t, h}))));
        const float scale = outs[d].scales.at<float>({j, row, g});
        EXPECT_EQ(scale, amax / 448.0f);
        for (int64_t h = g * 128; h < (g + 1) * 128; ++h) {
          const float x = f32(in[s].x.at<uint16_t>({t, h}));
          const float back =
              core::fp8_e4m3_to_float(outs[d].recv_x.at<uint8_t>({j, row, h})) * scale;
          ASSERT_LE(std::fabs(back - x), std::fabs(x) * 0.0625f + scale * 0.002f) << h;
        }
      }
    }
}

TEST(ReferenceLowLatency, Ue8m0PacksFourExponentBytesLowestFirst) {
  SimWorld world(2);
  LowLatencyCase c;
  c.R = 2;
  c.E = 4;
  c.K = 2;
  c.H = 1024;
  c.round_scale = true;
  c.ue8m0 = true;
  c.tokens = {5, 3};
  std::vector<RankInputs> in;
  auto outs = run_ll_dispatch(world, c, &in);
  check_routing(c, in, outs);
  for (int32_t s = 0; s < 2; ++s)
    for (int64_t t = 0; t < c.tokens[s]; ++t) {
      const int64_t e = in[s].topk_idx.at<int64_t>({t, 0});
      if (e < 0) continue;
      const int32_t d = static_cast<int32_t>(e / 2);
      const int64_t row = find_row(outs[d], e % 2, s, t);
      for (int64_t g = 0; g < c.H / 128; ++g) {
        float amax = 0;
        for (int64_t h = g * 128; h < (g + 1) * 128; ++h)
          amax = std::fmax(amax, std::fabs(f32(in[s].x.at<uint16_t>({t, h}))));
        const uint32_t word =
            static_cast<uint32_t>(outs[d].scales.at<int32_t>({e % 2, row, g / 4}));
        const uint8_t byte = static_cast<uint8_t>(word >> (8 * (g % 4)));
        EXPECT_EQ(byte, core::ue8m0_from_scale(core::fp8_scale_from_amax(amax, true))) << g;
      }
    }
}

TEST(ReferenceLowLatency, SkewedRoutingToOneExpert) {
  SimWorld world(3);
  LowLatencyCase c;
  c.hot_expert = 5;
  std::vector<RankInputs> in;
  auto outs = run_ll_dispatch(world, c, &in);
  check_routing(c, in, outs);
  EXPECT_GE(outs[1].count.at<int32_t>({1}), 12) << "expert 5 is local expert 1 of rank 1";
}

TEST(ReferenceLowLatency, NmaxMismatchAcrossRanksIsDetected) {
  SimWorld world(2);
  LowLatencyCase c;
  c.R = 2;
  c.E = 4;
  c.K = 2;
  c.tokens = {3, 3};
  std::vector<RankInputs> in;
  // Build valid args, then change N_max on rank 1 only (its outputs sized for it).
  const int32_t R = 2;
  std::vector<LowLatencyOutputs> outs(R);
  std::vector<LowLatencyDispatchArgs> args(R);
  for (int32_t r = 0; r < R; ++r) {
    const int32_t n_max = r == 1 ? 16 : 12;
    InputSpec spec;
    spec.num_tokens = 3;
    spec.hidden = c.H;
    spec.topk = 2;
    spec.num_experts = 4;
    in.push_back(make_inputs(spec, r, 1));
    outs[r].recv_x = HostTensor(DType::kBFloat16, {2, R * n_max, c.H});
    outs[r].count = HostTensor(DType::kInt32, {2});
    outs[r].src_info = HostTensor(DType::kInt32, {2, R * n_max});
    outs[r].layout_range = HostTensor(DType::kInt64, {2, R});
    args[r].x = in[r].x.view();
    args[r].topk_idx = in[r].topk_idx.view();
    args[r].num_max_dispatch_tokens_per_rank = n_max;
    args[r].num_experts = 4;
    args[r].use_fp8 = false;
    args[r].packed_recv_x = outs[r].recv_x.view();
    args[r].packed_recv_count = outs[r].count.view();
    args[r].handle = outs[r].handle(n_max, c.H, 4);
  }
  const Error e = world.low_latency_dispatch(args);
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(e.message().find(
                "rank 1: low_latency_dispatch: expected num_max_dispatch_tokens_per_rank=12"),
            std::string::npos)
      << e.message();
}

TEST(ReferenceLowLatency, WeightedCombineOfIdentityExpertsIsWeightSumTimesX) {
  SimWorld world(3);
  LowLatencyCase c;
  c.fp8 = false;
  std::vector<RankInputs> in;
  auto outs = run_ll_dispatch(world, c, &in);
  std::vector<LowLatencyCombineArgs> args(3);
  std::vector<HostTensor> out(3);
  for (int32_t r = 0; r < 3; ++r) {
    out[r] = HostTensor(DType::kBFloat16, {c.tokens[r], c.H});
    args[r].x = outs[r].recv_x.view();  // identity experts: output = input
    args[r].topk_idx = in[r].topk_idx.view();
    args[r].topk_weights = in[r].topk_weights.view();
    args[r].handle = outs[r].handle(c.N_max, c.H, c.E);
    args[r].out = out[r].view();
  }
  const Error e = world.low_latency_combine(args);
  ASSERT_TRUE(e.ok()) << e.to_string();
  for (int32_t s = 0; s < 3; ++s)
    for (int64_t t = 0; t < c.tokens[s]; ++t) {
      float wsum = 0;
      for (int64_t k = 0; k < c.K; ++k)
        if (in[s].topk_idx.at<int64_t>({t, k}) >= 0) wsum += in[s].topk_weights.at<float>({t, k});
      for (int64_t h = 0; h < c.H; ++h) {
        const float want = f32(in[s].x.at<uint16_t>({t, h})) * wsum;
        const float got = f32(out[s].at<uint16_t>({t, h}));
        ASSERT_LE(std::fabs(got - want), std::fabs(want) * 0.008f + 1e-6f)
            << s << " " << t << " " << h;
      }
    }
}

TEST(ReferenceLowLatency, CombineWithAForeignHandleIsReported) {
  SimWorld world(2);
  LowLatencyCase c;
  c.R = 2;
  c.E = 4;
  c.K = 2;
  c.fp8 = false;
  c.tokens = {4, 4};
  std::vector<RankInputs> in;
  auto outs = run_ll_dispatch(world, c, &in);
  // Pretend rank 0 dispatched different tokens: a selection with no row must be reported.
  std::vector<LowLatencyCombineArgs> args(2);
  std::vector<HostTensor> out(2);
  HostTensor other(DType::kInt64, {4, 2});
  for (int t = 0; t < 4; ++t) {
    other.at<int64_t>({t, 0}) = 3;
    other.at<int64_t>({t, 1}) = 2;
  }
  bool reported = false;
  for (int t = 0; t < 4 && !reported; ++t) reported = find_row(outs[1], 1, 0, t) < 0;
  for (int32_t r = 0; r < 2; ++r) {
    out[r] = HostTensor(DType::kBFloat16, {4, c.H});
    args[r].x = outs[r].recv_x.view();
    args[r].topk_idx = r == 0 ? other.view() : in[r].topk_idx.view();
    args[r].topk_weights = in[r].topk_weights.view();
    args[r].handle = outs[r].handle(c.N_max, c.H, c.E);
    args[r].out = out[r].view();
  }
  const Error e = world.low_latency_combine(args);
  if (reported) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(e.message().find("has no row for expert"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace epcomm::testing
