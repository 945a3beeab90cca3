#include "normal_case.h"

#include <cstring>

namespace epcomm::testing {
HostTensor random_bf16(int64_t rows, int64_t cols, uint64_t seed) {
  HostTensor t(DType::kBFloat16, {rows, cols});
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> v(-2.0f, 2.0f);
  for (int64_t i = 0; i < rows * cols; ++i) t.data<uint16_t>()[i] = bf16(v(rng));
  return t;
}

void expect_rows_equal(const HostTensor& got, const HostTensor& want, int64_t rows,
                       const std::string& what) {
  ASSERT_EQ(got.bytes().size(), want.bytes().size()) << what;
  if (want.numel() == 0) return;
  const int64_t row_bytes = static_cast<int64_t>(want.bytes().size()) / want.size(0);
  const int64_t n = rows < 0 ? want.size(0) : rows;
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(got.bytes().data() + i * row_bytes, want.bytes().data() + i * row_bytes,
                    row_bytes) != 0) {
      ADD_FAILURE() << what << ": row " << i << " of " << n << " differs from the reference";
      return;
    }
  }
}

NormalExpected normal_reference(const NormalCase& c, int32_t R, uint64_t seed) {
  std::vector<RankInputs> inputs;
  for (int32_t r = 0; r < R; ++r) {
    InputSpec s = c.spec;
    if (!c.tokens.empty()) s.num_tokens = c.tokens[r];
    inputs.push_back(make_inputs(s, r, seed));
  }
  return normal_reference_with(std::move(inputs), c, R, seed);
}

NormalExpected normal_reference_with(std::vector<RankInputs> inputs, const NormalCase& c, int32_t R,
                                     uint64_t seed) {
  NormalExpected x;
  reference::SimWorld world(R);
  x.inputs = std::move(inputs);
  PipelineOptions opts;
  opts.expert_alignment = c.expert_alignment;
  opts.num_worst_tokens = c.num_worst_tokens;
  x.outs = run_dispatch(world, x.inputs, c.spec, opts, &x.layouts);
  std::vector<CombineArgs> args(R);
  for (int32_t r = 0; r < R; ++r) {
    const int64_t T = x.inputs[r].x.size(0), H = c.spec.hidden, K = c.spec.topk;
    const int64_t N = x.outs[r].recv_x.size(0);
    x.expert_x.push_back(c.spec.fp8 ? random_bf16(N, H, seed * 31 + r) : x.outs[r].recv_x);
    x.bias0.push_back(random_bf16(T, H, seed * 37 + r));
    x.bias1.push_back(random_bf16(T, H, seed * 41 + r));
    x.combined.emplace_back(DType::kBFloat16, std::vector<int64_t>{T, H});
    x.combined_w.emplace_back(DType::kFloat32, std::vector<int64_t>{T, K});
  }
  for (int32_t r = 0; r < R; ++r) {
    args[r].x = x.expert_x[r].view();
    args[r].handle = x.outs[r].handle();
    args[r].topk_weights = x.outs[r].recv_topk_weights.view();
    if (c.biases) {
      args[r].bias0 = x.bias0[r].view();
      args[r].bias1 = x.bias1[r].view();
    }
    args[r].combined_x = x.combined[r].view();
    args[r].combined_topk_weights = x.combined_w[r].view();
  }
  const Error e = world.combine(args);
  EXPECT_TRUE(e.ok()) << e.to_string();
  return x;
}

DispatchHandle NormalDeviceRun::handle(int64_t num_recv) const {
  DispatchHandle h{rpm.view(),       src_idx.view(), in_rank_copy.view(),
                   send_slot.view(), num_recv,       TensorView{}};
  const auto R = static_cast<int64_t>(rpm.view().shape[0]);
  if (!rpm_host.empty())
    h.rank_prefix_matrix_host = TensorView::contiguous(const_cast<int32_t*>(rpm_host.data()),
                                                       DType::kInt32, {R, R}, DeviceKind::kCpu);
  return h;
}

NormalDeviceRun run_normal_case(GpuRank& r, Buffer& buffer, const NormalCase& c,
                                const NormalExpected& want) {
  const int32_t me = r.ctx->rank, R = r.ctx->num_ranks, dev = r.device;
  const RankInputs& in = want.inputs[me];
  const DispatchOutputs& ref = want.outs[me];
  const int64_t T = in.x.size(0), H = c.spec.hidden, K = c.spec.topk;
  NormalDeviceRun d;
  d.x = DeviceTensor(in.x, dev);
  if (c.spec.fp8) d.scales = DeviceTensor(in.x_scales, dev);
  d.topk = DeviceTensor(in.topk_idx, dev);
  d.weights = DeviceTensor(in.topk_weights, dev);
  d.per_rank = DeviceTensor::poisoned(want.layouts[me].num_tokens_per_rank, dev);
  d.per_expert = DeviceTensor::poisoned(want.layouts[me].num_tokens_per_expert, dev);
  d.in_rank = DeviceTensor::poisoned(want.layouts[me].is_token_in_rank, dev);
  LayoutArgs la{d.topk.view(),       c.spec.num_experts, d.per_rank.view(), {},
                d.per_expert.view(), d.in_rank.view()};
  Error e = buffer.get_dispatch_layout(la, r.stream);
  EXPECT_TRUE(e.ok()) << e.to_string();
  EXPECT_TRUE(buffer.synchronize(r.stream).ok());
  expect_rows_equal(d.per_rank.download(), want.layouts[me].num_tokens_per_rank, -1,
                    c.name + " num_tokens_per_rank");
  expect_rows_equal(d.per_expert.download(), want.layouts[me].num_tokens_per_expert, -1,
                    c.name + " num_tokens_per_expert");
  expect_rows_equal(d.in_rank.download(), want.layouts[me].is_token_in_rank, -1,
                    c.name + " is_token_in_rank");

  d.rpm = DeviceTensor::poisoned(ref.rank_prefix_matrix, dev);
  d.in_rank_copy = DeviceTensor::poisoned(ref.is_token_in_rank, dev);
  d.send_slot = DeviceTensor::poisoned(ref.send_slot, dev);
  if (c.num_worst_tokens == 0) {
    d.rpm_host.assign(static_cast<size_t>(R) * R, -1);
    DispatchNotifyArgs na{d.per_rank.view(), d.per_expert.view(),
                          d.in_rank.view(),  c.expert_alignment,
                          Config{},          d.handle(0)};
    e = buffer.dispatch_notify(na, &d.counts, r.stream);
    EXPECT_TRUE(e.ok()) << e.to_string();
    EXPECT_EQ(d.counts.num_recv_tokens, ref.counts.num_recv_tokens) << c.name;
    EXPECT_EQ(d.counts.num_recv_tokens_per_expert, ref.counts.num_recv_tokens_per_expert) << c.name;
    for (int32_t i = 0; i < R * R; ++i)
      EXPECT_EQ(d.rpm_host[i], ref.rank_prefix_matrix.at<int32_t>({i / R, i % R}))
          << c.name << " handle.rank_prefix_matrix_host[" << i << "]";
  }
  d.src_idx = DeviceTensor::poisoned(ref.recv_src_idx, dev);
  d.recv_x = DeviceTensor::poisoned(ref.recv_x, dev);
  if (c.spec.fp8) d.recv_scales = DeviceTensor::poisoned(ref.recv_x_scales, dev);
  d.recv_topk = DeviceTensor::poisoned(ref.recv_topk_idx, dev);
  d.recv_w = DeviceTensor::poisoned(ref.recv_topk_weights, dev);
  DispatchArgs da;
  da.x = d.x.view();
  da.x_scales = d.scales.view();
  da.topk_idx = d.topk.view();
  da.topk_weights = d.weights.view();
  da.num_tokens_per_rank = d.per_rank.view();
  da.num_tokens_per_expert = d.per_expert.view();
  da.is_token_in_rank = d.in_rank.view();
  da.num_experts = c.spec.num_experts;
  da.expert_alignment = c.expert_alignment;
  da.num_worst_tokens = c.num_worst_tokens;
  da.config.num_sms = c.num_sms;
  da.handle = d.handle(d.counts.num_recv_tokens);
  da.recv_x = d.recv_x.view();
  da.recv_x_scales = d.recv_scales.view();
  da.recv_topk_idx = d.recv_topk.view();
  da.recv_topk_weights = d.recv_w.view();
  e = buffer.dispatch(da, r.stream);
  EXPECT_TRUE(e.ok()) << e.to_string();
  e = buffer.synchronize(r.stream);
  EXPECT_TRUE(e.ok()) << e.to_string();
  const int64_t real = ref.rank_prefix_matrix.at<int32_t>({R - 1, me});
  expect_rows_equal(d.rpm.download(), ref.rank_prefix_matrix, -1, c.name + " rank_prefix_matrix");
  expect_rows_equal(d.send_slot.download(), ref.send_slot, -1, c.name + " send_slot");
  expect_rows_equal(d.in_rank_copy.download(), ref.is_token_in_rank, -1,
                    c.name + " handle.is_token_in_rank");
  expect_rows_equal(d.recv_x.download(), ref.recv_x, real, c.name + " recv_x");
  if (c.spec.fp8)
    expect_rows_equal(d.recv_scales.download(), ref.recv_x_scales, real, c.name + " recv_x_scales");
  expect_rows_equal(d.recv_topk.download(), ref.recv_topk_idx, -1, c.name + " recv_topk_idx");
  expect_rows_equal(d.recv_w.download(), ref.recv_topk_weights, -1, c.name + " recv_topk_weights");
  expect_rows_equal(d.src_idx.download(), ref.recv_src_idx, -1, c.name + " recv_src_idx");

  d.expert_x = DeviceTensor(want.expert_x[me], dev);
  d.bias0 = DeviceTensor(want.bias0[me], dev);
  d.bias1 = DeviceTensor(want.bias1[me], dev);
  d.combined = DeviceTensor::poisoned(want.combined[me], dev);
  d.combined_w = DeviceTensor::poisoned(want.combined_w[me], dev);
  CombineArgs ca;
  ca.x = d.expert_x.view();
  ca.handle = d.handle(d.counts.num_recv_tokens);
  ca.topk_weights = d.recv_w.view();
  if (c.biases) {
    ca.bias0 = d.bias0.view();
    ca.bias1 = d.bias1.view();
  }
  ca.config.num_sms = c.num_sms;
  ca.combined_x = d.combined.view();
  ca.combined_topk_weights = d.combined_w.view();
  e = buffer.combine(ca, r.stream);
  EXPECT_TRUE(e.ok()) << e.to_string();
  e = buffer.synchronize(r.stream);
  EXPECT_TRUE(e.ok()) << e.to_string();
  // Same float32 order (ranks ascending, then biases) as the reference: bitwise equal.
  expect_rows_equal(d.combined.download(), want.combined[me], -1, c.name + " combined_x");
  expect_rows_equal(d.combined_w.download(), want.combined_w[me], -1,
                    c.name + " combined_topk_weights");
  (void)T;
  (void)H;
  (void)K;
  return d;
}

}  // namespace epcomm::testing
