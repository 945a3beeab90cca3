// CPU reference of layout, normal dispatch and combine (semantics.md sections 1-3):
// hand-computed golden cases and properties on random worlds.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "common/moe_data.h"

namespace epcomm::testing {
namespace {

using reference::SimWorld;

// 2 ranks, 4 experts (2 per rank), 3 tokens on rank 0, 2 on rank 1, K = 2.
//   rank 0: t0 -> {0, 3}, t1 -> {1, -1}, t2 -> {-1, -1}
//   rank 1: t0 -> {2, 3}, t1 -> {0, 2}
struct TinyWorld {
  SimWorld world{2};
  InputSpec spec;
  std::vector<RankInputs> inputs;
  TinyWorld() {
    spec.num_tokens = 3;
    spec.hidden = 8;
    spec.topk = 2;
    spec.num_experts = 4;
    inputs = {make_inputs(spec, 0, 5), make_inputs(spec, 1, 5)};
    inputs[1].x = HostTensor(DType::kBFloat16, {2, 8});
    inputs[1].topk_idx = HostTensor(DType::kInt64, {2, 2});
    inputs[1].topk_weights = HostTensor(DType::kFloat32, {2, 2});
    const int64_t idx0[3][2] = {{0, 3}, {1, -1}, {-1, -1}};
    const int64_t idx1[2][2] = {{2, 3}, {0, 2}};
    for (int t = 0; t < 3; ++t)
      for (int k = 0; k < 2; ++k) {
        inputs[0].topk_idx.at<int64_t>({t, k}) = idx0[t][k];
        inputs[0].topk_weights.at<float>({t, k}) = 0.5f + t + 0.25f * k;
      }
    for (int t = 0; t < 2; ++t)
      for (int k = 0; k < 2; ++k) {
        inputs[1].topk_idx.at<int64_t>({t, k}) = idx1[t][k];
        inputs[1].topk_weights.at<float>({t, k}) = 10.0f + t + 0.25f * k;
      }
    for (int r = 0; r < 2; ++r)
      for (int64_t t = 0; t < inputs[r].x.size(0); ++t)
        for (int h = 0; h < 8; ++h)
          inputs[r].x.at<uint16_t>({t, h}) = bf16(100.0f * r + 10.0f * t + h);
  }
};

TEST(ReferenceLayout, GoldenTinyWorld) {
  TinyWorld w;
  auto out = make_layout_outputs(3, 2, 4);
  ASSERT_TRUE(w.world.get_dispatch_layout(0, out.args(w.inputs[0].topk_idx.view(), 4)).ok());
  // t0 -> ranks 0 and 1; t1 -> rank 0; t2 -> nowhere.
  EXPECT_EQ(out.num_tokens_per_rank.at<int32_t>({0}), 2);
  EXPECT_EQ(out.num_tokens_per_rank.at<int32_t>({1}), 1);
  const int32_t per_expert[4] = {1, 1, 0, 1};
  for (int e = 0; e < 4; ++e)
    EXPECT_EQ(out.num_tokens_per_expert.at<int32_t>({e}), per_expert[e]) << e;
  const uint8_t in_rank[3][2] = {{1, 1}, {1, 0}, {0, 0}};
  for (int t = 0; t < 3; ++t)
    for (int r = 0; r < 2; ++r) EXPECT_EQ(out.is_token_in_rank.at<uint8_t>({t, r}), in_rank[t][r]);
}

TEST(ReferenceLayout, TokenWithTwoExpertsOnOneRankCountsOnceForTheRank) {
  SimWorld world(2);
  HostTensor topk(DType::kInt32, {1, 3});
  topk.at<int32_t>({0, 0}) = 0;
  topk.at<int32_t>({0, 1}) = 1;
  topk.at<int32_t>({0, 2}) = -1;
  auto out = make_layout_outputs(1, 2, 4);
  ASSERT_TRUE(world.get_dispatch_layout(0, out.args(topk.view(), 4)).ok());
  EXPECT_EQ(out.num_tokens_per_rank.at<int32_t>({0}), 1);
  EXPECT_EQ(out.num_tokens_per_expert.at<int32_t>({0}), 1);
  EXPECT_EQ(out.num_tokens_per_expert.at<int32_t>({1}), 1);
}

TEST(ReferenceLayout, CountsAreConsistentOnRandomInput) {
  SimWorld world(4);
  InputSpec spec;
  spec.num_tokens = 200;
  spec.topk = 8;
  spec.num_experts = 32;
  auto in = make_inputs(spec, 2, 9);
  auto out = make_layout_outputs(200, 4, 32);
  ASSERT_TRUE(world.get_dispatch_layout(2, out.args(in.topk_idx.view(), 32)).ok());
  int64_t selections = 0, per_expert_sum = 0;
  for (int64_t t = 0; t < 200; ++t)
    for (int k = 0; k < 8; ++k) selections += in.topk_idx.at<int64_t>({t, k}) >= 0;
  for (int e = 0; e < 32; ++e) per_expert_sum += out.num_tokens_per_expert.at<int32_t>({e});
  EXPECT_EQ(selections, per_expert_sum);
  for (int r = 0; r < 4; ++r) {
    int64_t n = 0;
    for (int64_t t = 0; t < 200; ++t) n += out.is_token_in_rank.at<uint8_t>({t, r});
    EXPECT_EQ(n, out.num_tokens_per_rank.at<int32_t>({r}));
  }
}

TEST(ReferenceDispatch, GoldenTinyWorldOrderRemapAndWeights) {
  TinyWorld w;
  auto outs = run_dispatch(w.world, w.inputs, w.spec, PipelineOptions{});
  // Rank 0 receives: r0.t0, r0.t1, r1.t1 (source rank, then token).
  ASSERT_EQ(outs[0].counts.num_recv_tokens, 3);
  const int32_t src0[3] = {0, 1, 1};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(outs[0].recv_src_idx.at<int32_t>({i}), src0[i]);
  EXPECT_EQ(outs[0].recv_x.at<uint16_t>({2, 3}), bf16(100 + 10 + 3));  // r1.t1, h = 3
  // Remap on rank 0 (experts 0, 1): r0.t0 {0, 3} -> {0, -1}; r1.t1 {0, 2} -> {0, -1}.
  EXPECT_EQ(outs[0].recv_topk_idx.at<int64_t>({0, 0}), 0);
  EXPECT_EQ(outs[0].recv_topk_idx.at<int64_t>({0, 1}), -1);
  EXPECT_EQ(outs[0].recv_topk_weights.at<float>({0, 1}), 0.0f);
  EXPECT_EQ(outs[0].recv_topk_idx.at<int64_t>({1, 0}), 1);
  EXPECT_EQ(outs[0].recv_topk_weights.at<float>({2, 0}), 11.0f);
  // Rank 1 (experts 2, 3) receives r0.t0, r1.t0, r1.t1.
  ASSERT_EQ(outs[1].counts.num_recv_tokens, 3);
  EXPECT_EQ(outs[1].recv_topk_idx.at<int64_t>({0, 1}), 1);  // expert 3 -> local 1
  EXPECT_EQ(outs[1].recv_topk_idx.at<int64_t>({1, 0}), 0);  // expert 2 -> local 0
  EXPECT_EQ(outs[1].recv_topk_weights.at<float>({0, 1}), 0.75f);
  // rank_prefix_matrix[i][j]: tokens ranks 0..i send to j.
  EXPECT_EQ(outs[0].rank_prefix_matrix.at<int32_t>({0, 0}), 2);
  EXPECT_EQ(outs[0].rank_prefix_matrix.at<int32_t>({0, 1}), 1);
  EXPECT_EQ(outs[0].rank_prefix_matrix.at<int32_t>({1, 0}), 3);
  EXPECT_EQ(outs[0].rank_prefix_matrix.at<int32_t>({1, 1}), 3);
  // Per-expert counts on rank 0: expert 0 twice, expert 1 once.
  EXPECT_EQ(outs[0].counts.num_recv_tokens_per_expert, (std::vector<int32_t>{2, 1}));
  EXPECT_EQ(outs[1].counts.num_recv_tokens_per_expert, (std::vector<int32_t>{2, 2}));
}

TEST(ReferenceDispatch, ExpertAlignmentRoundsPerExpertCounts) {
  TinyWorld w;
  PipelineOptions opts;
  opts.expert_alignment = 4;
  auto outs = run_dispatch(w.world, w.inputs, w.spec, opts);
  EXPECT_EQ(outs[0].counts.num_recv_tokens_per_expert, (std::vector<int32_t>{4, 4}));
}

TEST(ReferenceDispatch, EveryRowArrivesExactlyOnceAndBitExact) {
  for (int R : {2, 3, 5}) {
    SimWorld world(R);
    InputSpec spec;
    spec.num_tokens = 40;
    spec.topk = 6;
    spec.num_experts = 6 * R;
    std::vector<RankInputs> inputs;
    for (int r = 0; r < R; ++r) inputs.push_back(make_inputs(spec, r, 77));
    std::vector<LayoutOutputs> layouts;
    auto outs = run_dispatch(world, inputs, spec, PipelineOptions{}, &layouts);
    // Token conservation: (source, token, destination) triples received == sent.
    std::set<std::tuple<int, int, int>> sent, received;
    for (int s = 0; s < R; ++s)
      for (int t = 0; t < 40; ++t)
        for (int d = 0; d < R; ++d)
          if (layouts[s].is_token_in_rank.at<uint8_t>({t, d})) sent.insert({s, t, d});
    for (int d = 0; d < R; ++d) {
      int64_t row = 0;
      for (int s = 0; s < R; ++s) {
        const int64_t end = outs[d].rank_prefix_matrix.at<int32_t>({s, d});
        int prev = -1;
        for (; row < end; ++row) {
          const int t = outs[d].recv_src_idx.at<int32_t>({row});
          EXPECT_GT(t, prev) << "tokens ascending within a source";
          prev = t;
          received.insert({s, t, d});
          for (int h = 0; h < spec.hidden; ++h)
            ASSERT_EQ(outs[d].recv_x.at<uint16_t>({row, h}), inputs[s].x.at<uint16_t>({t, h}));
        }
      }
      EXPECT_EQ(row, outs[d].counts.num_recv_tokens);
    }
    EXPECT_EQ(sent, received) << "R=" << R;
  }
}

TEST(ReferenceDispatch, Fp8WithColumnMajorScalesCopiesDataAndScalesUnchanged) {
  SimWorld world(3);
  InputSpec spec;
  spec.fp8 = true;
  spec.column_major_scales = true;
  spec.num_experts = 12;
  std::vector<RankInputs> inputs;
  for (int r = 0; r < 3; ++r) inputs.push_back(make_inputs(spec, r, 3));
  auto outs = run_dispatch(world, inputs, spec, PipelineOptions{});
  for (int d = 0; d < 3; ++d) {
    int64_t row = 0;
    for (int s = 0; s < 3; ++s) {
      for (; row < outs[d].rank_prefix_matrix.at<int32_t>({s, d}); ++row) {
        const int t = outs[d].recv_src_idx.at<int32_t>({row});
        for (int h = 0; h < spec.hidden; ++h)
          ASSERT_EQ(outs[d].recv_x.at<uint8_t>({row, h}), inputs[s].x.at<uint8_t>({t, h}));
        for (int g = 0; g < spec.hidden / 128; ++g)
          ASSERT_EQ(outs[d].recv_x_scales.at<float>({row, g}),
                    inputs[s].x_scales.at<float>({t, g}));
      }
    }
  }
}

TEST(ReferenceDispatch, WorstTokensPadsWithMaskedRows) {
  TinyWorld w;
  PipelineOptions opts;
  opts.num_worst_tokens = 5;
  auto outs = run_dispatch(w.world, w.inputs, w.spec, opts);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(outs[r].recv_x.size(0), 5);
    for (int pad = 3; pad < 5; ++pad) {
      EXPECT_EQ(outs[r].recv_src_idx.at<int32_t>({pad}), -1);
      for (int k = 0; k < 2; ++k) {
        EXPECT_EQ(outs[r].recv_topk_idx.at<int64_t>({pad, k}), -1);
        EXPECT_EQ(outs[r].recv_topk_weights.at<float>({pad, k}), 0.0f);
      }
    }
    EXPECT_TRUE(outs[r].counts.num_recv_tokens_per_expert.empty());
  }
  EXPECT_EQ(outs[0].recv_src_idx.at<int32_t>({2}), 1);
}

TEST(ReferenceDispatch, MoreRowsThanWorstTokensIsACallerError) {
  TinyWorld w;
  const int32_t R = 2;
  std::vector<LayoutOutputs> layouts;
  std::vector<DispatchArgs> args(R);
  std::vector<std::vector<HostTensor>> keep(R);
  for (int r = 0; r < R; ++r) {
    const int64_t T = w.inputs[r].x.size(0);
    layouts.push_back(make_layout_outputs(T, R, 4));
    ASSERT_TRUE(
        w.world.get_dispatch_layout(r, layouts[r].args(w.inputs[r].topk_idx.view(), 4)).ok());
    keep[r] = {HostTensor(DType::kInt32, {R, R}), HostTensor(DType::kInt32, {2}),
               HostTensor(DType::kBool, {T, R}), HostTensor(DType::kInt32, {T, R}),
               HostTensor(DType::kBFloat16, {2, 8})};
    args[r].x = w.inputs[r].x.view();
    args[r].num_tokens_per_rank = layouts[r].num_tokens_per_rank.view();
    args[r].num_tokens_per_expert = layouts[r].num_tokens_per_expert.view();
    args[r].is_token_in_rank = layouts[r].is_token_in_rank.view();
    args[r].num_experts = 4;
    args[r].num_worst_tokens = 2;  // each rank receives 3
    args[r].handle = DispatchHandle{keep[r][0].view(), keep[r][1].view(), keep[r][2].view(),
                                    keep[r][3].view(), 0};
    args[r].recv_x = keep[r][4].view();
  }
  const Error e = w.world.dispatch(args);
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(e.message().find("rank 0: dispatch: num_worst_tokens: expected at least the 3 rows"),
            std::string::npos)
      << e.message();
}

TEST(ReferenceDispatch, HiddenMismatchAcrossRanksNamesTheRank) {
  TinyWorld w;
  w.inputs[1].x = HostTensor(DType::kBFloat16, {2, 16});
  const int32_t R = 2;
  std::vector<LayoutOutputs> layouts;
  std::vector<DispatchArgs> args(R);
  std::vector<std::vector<HostTensor>> keep(R);
  for (int r = 0; r < R; ++r) {
    const int64_t T = w.inputs[r].x.size(0), H = w.inputs[r].x.size(1);
    layouts.push_back(make_layout_outputs(T, R, 4));
    ASSERT_TRUE(
        w.world.get_dispatch_layout(r, layouts[r].args(w.inputs[r].topk_idx.view(), 4)).ok());
    keep[r] = {HostTensor(DType::kInt32, {R, R}), HostTensor(DType::kInt32, {3}),
               HostTensor(DType::kBool, {T, R}), HostTensor(DType::kInt32, {T, R}),
               HostTensor(DType::kBFloat16, {3, H})};
    args[r].x = w.inputs[r].x.view();
    args[r].num_tokens_per_rank = layouts[r].num_tokens_per_rank.view();
    args[r].num_tokens_per_expert = layouts[r].num_tokens_per_expert.view();
    args[r].is_token_in_rank = layouts[r].is_token_in_rank.view();
    args[r].num_experts = 4;
    args[r].handle = DispatchHandle{keep[r][0].view(), keep[r][1].view(), keep[r][2].view(),
                                    keep[r][3].view(), 3};
    args[r].recv_x = keep[r][4].view();
  }
  const Error e = w.world.dispatch(args);
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(e.message().find("rank 1: dispatch: x: expected hidden 8"), std::string::npos)
      << e.message();
}

TEST(ReferenceDispatch, CachedDispatchFollowsTheSameRouting) {
  SimWorld world(3);
  InputSpec spec;
  spec.num_experts = 12;
  std::vector<RankInputs> inputs;
  for (int r = 0; r < 3; ++r) inputs.push_back(make_inputs(spec, r, 11));
  auto outs = run_dispatch(world, inputs, spec, PipelineOptions{});
  // New data, same routing: send along the handles.
  std::vector<RankInputs> again;
  for (int r = 0; r < 3; ++r) again.push_back(make_inputs(spec, r, 12));
  std::vector<DispatchArgs> args(3);
  std::vector<HostTensor> recv(3);
  for (int r = 0; r < 3; ++r) {
    recv[r] = HostTensor(DType::kBFloat16, {outs[r].counts.num_recv_tokens, spec.hidden});
    args[r].x = again[r].x.view();
    args[r].cached = true;
    args[r].handle = outs[r].handle();
    args[r].recv_x = recv[r].view();
  }
  const Error e = world.dispatch(args);
  ASSERT_TRUE(e.ok()) << e.to_string();
  for (int d = 0; d < 3; ++d) {
    int64_t row = 0;
    for (int s = 0; s < 3; ++s)
      for (; row < outs[d].rank_prefix_matrix.at<int32_t>({s, d}); ++row) {
        const int t = outs[d].recv_src_idx.at<int32_t>({row});
        for (int h = 0; h < spec.hidden; ++h)
          ASSERT_EQ(recv[d].at<uint16_t>({row, h}), again[s].x.at<uint16_t>({t, h}));
      }
  }
}

TEST(ReferenceDispatch, RanksWithZeroTokens) {
  SimWorld world(3);
  InputSpec spec;
  spec.num_experts = 6;
  std::vector<RankInputs> inputs;
  for (int r = 0; r < 3; ++r) {
    InputSpec s = spec;
    s.num_tokens = r == 1 ? 0 : 10;
    inputs.push_back(make_inputs(s, r, 4));
  }
  auto outs = run_dispatch(world, inputs, spec, PipelineOptions{});
  for (int d = 0; d < 3; ++d) {
    EXPECT_EQ(outs[d].rank_prefix_matrix.at<int32_t>({0, d}),
              outs[d].rank_prefix_matrix.at<int32_t>({1, d}))
        << "rank 1 sends nothing";
  }
}

// ---- combine ----

struct CombineRun {
  std::vector<HostTensor> combined, combined_w;
  Error error;
};

CombineRun run_combine(const SimWorld& world, const std::vector<DispatchOutputs>& outs,
                       const std::vector<HostTensor>& expert_x,
                       const std::vector<RankInputs>& inputs, bool weights,
                       const std::vector<HostTensor>* bias0 = nullptr,
                       const std::vector<HostTensor>* bias1 = nullptr) {
  const int R = world.num_ranks();
  CombineRun run;
  std::vector<CombineArgs> args(R);
  for (int r = 0; r < R; ++r) {
    const int64_t T = inputs[r].x.size(0), H = expert_x[r].size(1), K = inputs[r].topk_idx.size(1);
    run.combined.emplace_back(DType::kBFloat16, std::vector<int64_t>{T, H});
    run.combined_w.emplace_back(DType::kFloat32, std::vector<int64_t>{T, K});
  }
  for (int r = 0; r < R; ++r) {
    args[r].x = expert_x[r].view();
    args[r].handle = outs[r].handle();
    if (weights) {
      args[r].topk_weights = outs[r].recv_topk_weights.view();
      args[r].combined_topk_weights = run.combined_w[r].view();
    }
    if (bias0) args[r].bias0 = (*bias0)[r].view();
    if (bias1) args[r].bias1 = (*bias1)[r].view();
    args[r].combined_x = run.combined[r].view();
  }
  run.error = world.combine(args);
  return run;
}

TEST(ReferenceCombine, CombineOfDispatchIsXTimesTheNumberOfDestinations) {
  SimWorld world(4);
  InputSpec spec;
  spec.num_tokens = 30;
  spec.num_experts = 16;
  std::vector<RankInputs> inputs;
  for (int r = 0; r < 4; ++r) inputs.push_back(make_inputs(spec, r, 21));
  std::vector<LayoutOutputs> layouts;
  auto outs = run_dispatch(world, inputs, spec, PipelineOptions{}, &layouts);
  std::vector<HostTensor> expert_x;
  for (int r = 0; r < 4; ++r) expert_x.push_back(outs[r].recv_x);
  auto run = run_combine(world, outs, expert_x, inputs, true);
  ASSERT_TRUE(run.error.ok()) << run.error.to_string();
  for (int s = 0; s < 4; ++s)
    for (int t = 0; t < 30; ++t) {
      int n = 0;
      for (int d = 0; d < 4; ++d) n += layouts[s].is_token_in_rank.at<uint8_t>({t, d});
      for (int h = 0; h < spec.hidden; ++h)
        ASSERT_EQ(run.combined[s].at<uint16_t>({t, h}),
                  bf16(f32(inputs[s].x.at<uint16_t>({t, h})) * n));
      // Every kept weight comes back from exactly one rank; masked entries give 0.
      for (int k = 0; k < spec.topk; ++k) {
        const bool kept = inputs[s].topk_idx.at<int64_t>({t, k}) >= 0;
        EXPECT_EQ(run.combined_w[s].at<float>({t, k}),
                  kept ? inputs[s].topk_weights.at<float>({t, k}) : 0.0f);
      }
    }
}

TEST(ReferenceCombine, SumsInRankOrderInFloat32AndRoundsOnce) {
  TinyWorld w;
  auto outs = run_dispatch(w.world, w.inputs, w.spec, PipelineOptions{});
  // r0.t0 is row 0 on rank 0 and on rank 1.
  std::vector<HostTensor> expert_x = {HostTensor(DType::kBFloat16, {3, 8}),
                                      HostTensor(DType::kBFloat16, {3, 8})};
  std::vector<HostTensor> bias = {HostTensor(DType::kBFloat16, {3, 8}),
                                  HostTensor(DType::kBFloat16, {2, 8})};
  // h = 0: order matters. (2^24 + 1) rounds to 2^24 in fp32, then + (-2^24) = 0; adding the bias
  // first would give 1.
  expert_x[0].at<uint16_t>({0, 0}) = bf16(16777216.0f);
  expert_x[1].at<uint16_t>({0, 0}) = bf16(1.0f);
  bias[0].at<uint16_t>({0, 0}) = bf16(-16777216.0f);
  // h >= 1: one rounding. 1 + 2^-8 + 2^-8 = 1 + 2^-7 in fp32; rounding to bf16 after each
  // addition would tie back to 1.0 twice.
  for (int h = 1; h < 8; ++h) {
    expert_x[0].at<uint16_t>({0, h}) = bf16(1.0f);
    expert_x[1].at<uint16_t>({0, h}) = bf16(0.00390625f);
    bias[0].at<uint16_t>({0, h}) = bf16(0.00390625f);
  }
  auto run = run_combine(w.world, outs, expert_x, w.inputs, false, &bias);
  ASSERT_TRUE(run.error.ok()) << run.error.to_string();
  EXPECT_EQ(run.combined[0].at<uint16_t>({0, 0}), 0);
  for (int h = 1; h < 8; ++h) EXPECT_EQ(run.combined[0].at<uint16_t>({0, h}), 0x3f81) << h;
  EXPECT_EQ(run.combined[0].at<uint16_t>({2, 0}), 0) << "sent nowhere, no bias";
}

TEST(ReferenceCombine, BiasesAreAddedAndTokensSentNowhereGetTheBiasSum) {
  TinyWorld w;
  auto outs = run_dispatch(w.world, w.inputs, w.spec, PipelineOptions{});
  std::vector<HostTensor> expert_x = {outs[0].recv_x, outs[1].recv_x};
  std::vector<HostTensor> b0 = {HostTensor(DType::kBFloat16, {3, 8}),
                                HostTensor(DType::kBFloat16, {2, 8})};
  std::vector<HostTensor> b1 = b0;
  for (int r = 0; r < 2; ++r)
    for (int64_t t = 0; t < b0[r].size(0); ++t)
      for (int h = 0; h < 8; ++h) {
        b0[r].at<uint16_t>({t, h}) = bf16(0.5f);
        b1[r].at<uint16_t>({t, h}) = bf16(0.25f * h);
      }
  auto run = run_combine(w.world, outs, expert_x, w.inputs, false, &b0, &b1);
  ASSERT_TRUE(run.error.ok()) << run.error.to_string();
  for (int h = 0; h < 8; ++h) {
    EXPECT_EQ(run.combined[0].at<uint16_t>({2, h}), bf16(0.5f + 0.25f * h)) << "token sent nowhere";
    EXPECT_EQ(run.combined[0].at<uint16_t>({1, h}), bf16(10.0f + h + 0.5f + 0.25f * h))
        << "one destination";
    EXPECT_EQ(run.combined[0].at<uint16_t>({0, h}), bf16(2.0f * h + 0.5f + 0.25f * h))
        << "two destinations";
  }
}

TEST(ReferenceCombine, IsBitwiseReproducible) {
  SimWorld world(3);
  InputSpec spec;
  spec.num_experts = 9;
  spec.topk = 3;
  std::vector<RankInputs> inputs;
  for (int r = 0; r < 3; ++r) inputs.push_back(make_inputs(spec, r, 8));
  auto outs = run_dispatch(world, inputs, spec, PipelineOptions{});
  std::vector<HostTensor> expert_x;
  for (int r = 0; r < 3; ++r) expert_x.push_back(outs[r].recv_x);
  auto a = run_combine(world, outs, expert_x, inputs, true);
  auto b = run_combine(world, outs, expert_x, inputs, true);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(a.combined[r].bytes(), b.combined[r].bytes());
}

}  // namespace
}  // namespace epcomm::testing
