#include "common/moe_data.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace epcomm::testing {

RankInputs make_inputs(const InputSpec& s, int32_t rank, uint64_t seed) {
  std::mt19937_64 rng(seed * 1000003ull + static_cast<uint64_t>(rank) * 7919ull + 17);
  std::uniform_real_distribution<float> value(-4.0f, 4.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  RankInputs in;
  const int64_t T = s.num_tokens, H = s.hidden, K = s.topk;
  in.topk_idx = HostTensor(s.index_dtype, {T, K});
  in.topk_weights = HostTensor(DType::kFloat32, {T, K});
  std::vector<int32_t> experts(s.num_experts);
  for (int64_t t = 0; t < T; ++t) {
    for (int32_t e = 0; e < s.num_experts; ++e) experts[e] = e;
    std::shuffle(experts.begin(), experts.end(), rng);
    if (s.hot_expert >= 0 && unit(rng) < 0.9) {
      auto it = std::find(experts.begin(), experts.end(), s.hot_expert);
      std::iter_swap(experts.begin(), it);
    }
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = (k < s.num_experts && unit(rng) >= s.mask_prob) ? experts[k] : -1;
      if (s.index_dtype == DType::kInt64) {
        in.topk_idx.at<int64_t>({t, k}) = e;
      } else {
        in.topk_idx.at<int32_t>({t, k}) = static_cast<int32_t>(e);
      }
      in.topk_weights.at<float>({t, k}) = static_cast<float>(unit(rng));
    }
  }
  if (!s.fp8) {
    in.x = HostTensor(DType::kBFloat16, {T, H});
    for (int64_t i = 0; i < T * H; ++i) in.x.data<uint16_t>()[i] = bf16(value(rng));
  } else {
    in.x = HostTensor(DType::kFloat8E4M3, {T, H});
    for (int64_t i = 0; i < T * H; ++i)
      in.x.data<uint8_t>()[i] = core::float_to_fp8_e4m3(value(rng) * 50.0f);
    const int64_t G = H / core::kFp8GroupSize;
    in.x_scales = s.column_major_scales ? HostTensor::column_major_last2(DType::kFloat32, {T, G})
                                        : HostTensor(DType::kFloat32, {T, G});
    for (int64_t t = 0; t < T; ++t)
      for (int64_t g = 0; g < G; ++g)
        in.x_scales.at<float>({t, g}) = static_cast<float>(unit(rng)) + 0.01f;
  }
  return in;
}

LayoutArgs LayoutOutputs::args(const TensorView& topk_idx, int32_t num_experts) const {
  LayoutArgs a;
  a.topk_idx = topk_idx;
  a.num_experts = num_experts;
  a.num_tokens_per_rank = num_tokens_per_rank.view();
  a.num_tokens_per_expert = num_tokens_per_expert.view();
  a.is_token_in_rank = is_token_in_rank.view();
  return a;
}

LayoutOutputs make_layout_outputs(int64_t T, int32_t R, int32_t E) {
  return LayoutOutputs{HostTensor(DType::kInt32, {R}), HostTensor(DType::kInt32, {E}),
                       HostTensor(DType::kBool, {T, R})};
}

DispatchHandle DispatchOutputs::handle() const {
  return DispatchHandle{rank_prefix_matrix.view(), recv_src_idx.view(), is_token_in_rank.view(),
                        send_slot.view(), counts.num_recv_tokens};
}

std::vector<DispatchOutputs> run_dispatch(const reference::SimWorld& world,
                                          const std::vector<RankInputs>& inputs,
                                          const InputSpec& spec, const PipelineOptions& opts,
                                          std::vector<LayoutOutputs>* layouts_out) {
  const int32_t R = world.num_ranks();
  std::vector<LayoutOutputs> layouts;
  std::vector<DispatchOutputs> outs(R);
  for (int32_t r = 0; r < R; ++r) {
    const int64_t T = inputs[r].x.size(0);
    layouts.push_back(make_layout_outputs(T, R, spec.num_experts));
    const Error e =
        world.get_dispatch_layout(r, layouts[r].args(inputs[r].topk_idx.view(), spec.num_experts));
    EXPECT_TRUE(e.ok()) << e.to_string();
    outs[r].rank_prefix_matrix = HostTensor(DType::kInt32, {R, R});
    outs[r].is_token_in_rank = HostTensor(DType::kBool, {T, R});
    outs[r].send_slot = HostTensor(DType::kInt32, {T, R});
  }
  if (opts.num_worst_tokens == 0) {
    std::vector<DispatchNotifyArgs> notify(R);
    for (int32_t r = 0; r < R; ++r) {
      notify[r].num_tokens_per_rank = layouts[r].num_tokens_per_rank.view();
      notify[r].num_tokens_per_expert = layouts[r].num_tokens_per_expert.view();
      notify[r].is_token_in_rank = layouts[r].is_token_in_rank.view();
      notify[r].expert_alignment = opts.expert_alignment;
      notify[r].handle = outs[r].handle();
    }
    std::vector<DispatchCounts> counts;
    const Error e = world.dispatch_notify(notify, &counts);
    EXPECT_TRUE(e.ok()) << e.to_string();
    if (!e.ok()) return outs;
    for (int32_t r = 0; r < R; ++r) outs[r].counts = counts[r];
  }
  std::vector<DispatchArgs> args(R);
  for (int32_t r = 0; r < R; ++r) {
    const int64_t N =
        opts.num_worst_tokens > 0 ? opts.num_worst_tokens : outs[r].counts.num_recv_tokens;
    const int64_t H = spec.hidden, K = spec.topk;
    DispatchOutputs& o = outs[r];
    o.recv_x = HostTensor(inputs[r].x.dtype(), {N, H});
    o.recv_src_idx = HostTensor(DType::kInt32, {N});
    if (spec.fp8) o.recv_x_scales = HostTensor(DType::kFloat32, {N, H / core::kFp8GroupSize});
    if (opts.with_topk) {
      o.recv_topk_idx = HostTensor(spec.index_dtype, {N, K});
      o.recv_topk_weights = HostTensor(DType::kFloat32, {N, K});
    }
    DispatchArgs& a = args[r];
    a.x = inputs[r].x.view();
    if (spec.fp8) a.x_scales = inputs[r].x_scales.view();
    if (opts.with_topk) {
      a.topk_idx = inputs[r].topk_idx.view();
      a.topk_weights = inputs[r].topk_weights.view();
      a.recv_topk_idx = o.recv_topk_idx.view();
      a.recv_topk_weights = o.recv_topk_weights.view();
    }
    a.num_tokens_per_rank = layouts[r].num_tokens_per_rank.view();
    a.num_tokens_per_expert = layouts[r].num_tokens_per_expert.view();
    a.is_token_in_rank = layouts[r].is_token_in_rank.view();
    a.num_experts = spec.num_experts;
    a.expert_alignment = opts.expert_alignment;
    a.num_worst_tokens = opts.num_worst_tokens;
    a.handle = o.handle();
    a.recv_x = o.recv_x.view();
    if (spec.fp8) a.recv_x_scales = o.recv_x_scales.view();
  }
  const Error e = world.dispatch(args);
  EXPECT_TRUE(e.ok()) << e.to_string();
  if (layouts_out) *layouts_out = std::move(layouts);
  return outs;
}

}  // namespace epcomm::testing
