// Validation (semantics.md section 7): errors before any work, naming argument, expected and
// actual value.
#include <gtest/gtest.h>

#include "common/moe_data.h"
#include "core/validate.h"

namespace epcomm::testing {
namespace {

using core::validate_buffer_options;

Topology topo4(int32_t rank = 0) {
  return Topology{rank, 4, 4};
}

void expect_error(const Error& e, ErrorCode code, std::initializer_list<const char*> parts) {
  EXPECT_EQ(e.code(), code) << e.to_string();
  for (const char* p : parts)
    EXPECT_NE(e.message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << e.message();
}

TEST(ValidateOptions, RankOutOfRangeNamesArgumentExpectedAndActual) {
  BufferOptions o;
  o.num_ranks = 4;
  o.rank = 4;
  expect_error(validate_buffer_options(o), ErrorCode::kInvalidArgument,
               {"rank", "[0, 4)", "got 4"});
}

TEST(ValidateOptions, MultiNodeIsReportedAsNotSupported) {
  BufferOptions o;
  o.num_ranks = 16;
  o.gpus_per_node = 8;
  expect_error(validate_buffer_options(o), ErrorCode::kNotSupported,
               {"multi-node is not supported yet", "gpus_per_node=8", "num_ranks=16"});
}

TEST(ValidateOptions, MoreRanksThanOneNodesKernelsSupportAreReported) {
  BufferOptions o;
  o.num_ranks = 72;
  expect_error(validate_buffer_options(o), ErrorCode::kNotSupported,
               {"num_ranks", "at most 64", "got 72"});
  o.num_ranks = 64;
  EXPECT_TRUE(validate_buffer_options(o).ok());
}

TEST(ValidateOptions, NegativeSizesAndTimeoutAreRejected) {
  BufferOptions o;
  o.num_nvl_bytes = -1;
  expect_error(validate_buffer_options(o), ErrorCode::kInvalidArgument,
               {"num_nvl_bytes", ">= 0", "-1"});
  o = BufferOptions{};
  o.timeout_seconds = 0;
  expect_error(validate_buffer_options(o), ErrorCode::kInvalidArgument, {"timeout_seconds"});
  o = BufferOptions{};
  EXPECT_TRUE(validate_buffer_options(o).ok());
}

TEST(ValidateConfig, ChunkSizesMustBeConsistent) {
  Config c;
  c.num_max_nvl_chunked_recv_tokens = 2;
  c.num_max_nvl_chunked_send_tokens = 6;
  expect_error(core::validate_config("dispatch", c), ErrorCode::kInvalidArgument,
               {"config.num_max_nvl_chunked_recv_tokens", ">= num_max_nvl_chunked_send_tokens (6)",
                "got 2"});
  c = Config{};
  c.num_sms = 0;
  expect_error(core::validate_config("dispatch", c), ErrorCode::kInvalidArgument,
               {"config.num_sms", "got 0"});
}

TEST(ValidateLayout, WrongTopkDtypeIsNamed) {
  HostTensor topk(DType::kFloat32, {8, 2});
  auto out = make_layout_outputs(8, 4, 16);
  LayoutArgs a = out.args(topk.view(), 16);
  expect_error(core::validate_layout_args(a, topo4(), DeviceKind::kCpu),
               ErrorCode::kInvalidArgument,
               {"get_dispatch_layout", "topk_idx", "int64 or int32", "got float32"});
}

TEST(ValidateLayout, OutOfRangeExpertIdNamesItsPosition) {
  HostTensor topk(DType::kInt64, {3, 2});
  topk.at<int64_t>({2, 1}) = 16;
  auto out = make_layout_outputs(3, 4, 16);
  expect_error(core::validate_layout_args(out.args(topk.view(), 16), topo4(), DeviceKind::kCpu),
               ErrorCode::kInvalidArgument, {"topk_idx", "[0, 16)", "got 16 at [2, 1]"});
  topk.at<int64_t>({2, 1}) = -2;
  expect_error(core::validate_layout_args(out.args(topk.view(), 16), topo4(), DeviceKind::kCpu),
               ErrorCode::kInvalidArgument, {"got -2 at [2, 1]"});
}

TEST(ValidateLayout, ExpertsMustDivideAmongRanks) {
  HostTensor topk(DType::kInt64, {3, 2});
  auto out = make_layout_outputs(3, 4, 18);
  expect_error(core::validate_layout_args(out.args(topk.view(), 18), topo4(), DeviceKind::kCpu),
               ErrorCode::kInvalidArgument,
               {"num_experts", "multiple of the number of ranks (4)", "got 18"});
}

TEST(ValidateLayout, ShapeMismatchShowsExpectedAndActualShapes) {
  HostTensor topk(DType::kInt64, {3, 2});
  auto out = make_layout_outputs(5, 4, 16);  // is_token_in_rank has 5 rows, topk 3
  expect_error(core::validate_layout_args(out.args(topk.view(), 16), topo4(), DeviceKind::kCpu),
               ErrorCode::kInvalidArgument, {"is_token_in_rank", "[T=3, R=4]", "got [5, 4]"});
}

TEST(ValidateLayout, DeviceTensorWhereHostExpected) {
  HostTensor topk(DType::kInt64, {3, 2});
  auto out = make_layout_outputs(3, 4, 16);
  LayoutArgs a = out.args(topk.view(), 16);
  expect_error(core::validate_layout_args(a, topo4(), DeviceKind::kCuda),
               ErrorCode::kInvalidArgument,
               {"topk_idx", "expected a cuda tensor, got a cpu tensor"});
}

DispatchArgs valid_dispatch(const InputSpec& spec, std::vector<HostTensor>& keep) {
  auto in = make_inputs(spec, 0, 1);
  const int64_t T = spec.num_tokens;
  keep = {in.x,
          in.topk_idx,
          in.topk_weights,
          HostTensor(DType::kInt32, {4}),
          HostTensor(DType::kInt32, {spec.num_experts}),
          HostTensor(DType::kBool, {T, 4}),
          HostTensor(DType::kInt32, {4, 4}),
          HostTensor(DType::kInt32, {T}),
          HostTensor(DType::kBool, {T, 4}),
          HostTensor(DType::kInt32, {T, 4}),
          HostTensor(DType::kBFloat16, {T, spec.hidden}),
          HostTensor(spec.index_dtype, {T, spec.topk}),
          HostTensor(DType::kFloat32, {T, spec.topk})};
  DispatchArgs a;
  a.x = keep[0].view();
  a.topk_idx = keep[1].view();
  a.topk_weights = keep[2].view();
  a.num_tokens_per_rank = keep[3].view();
  a.num_tokens_per_expert = keep[4].view();
  a.is_token_in_rank = keep[5].view();
  a.num_experts = spec.num_experts;
  a.handle = DispatchHandle{keep[6].view(), keep[7].view(), keep[8].view(), keep[9].view(), T};
  a.recv_x = keep[10].view();
  a.recv_topk_idx = keep[11].view();
  a.recv_topk_weights = keep[12].view();
  return a;
}

TEST(ValidateDispatch, ValidArgumentsPass) {
  std::vector<HostTensor> keep;
  InputSpec spec;
  const DispatchArgs a = valid_dispatch(spec, keep);
  const Error e = core::validate_dispatch_args(a, topo4(), DeviceKind::kCpu, spec.num_tokens);
  EXPECT_TRUE(e.ok()) << e.to_string();
}

TEST(ValidateDispatch, RowNotMultipleOf16BytesIsRejected) {
  std::vector<HostTensor> keep;
  InputSpec spec;
  spec.hidden = 100;  // 200 bytes per bf16 row
  const DispatchArgs a = valid_dispatch(spec, keep);
  expect_error(core::validate_dispatch_args(a, topo4(), DeviceKind::kCpu, spec.num_tokens),
               ErrorCode::kInvalidArgument,
               {"dispatch: x", "multiple of 16 bytes", "got 200 bytes"});
}

TEST(ValidateDispatch, Fp8NeedsScalesOfTheRightShape) {
  std::vector<HostTensor> keep;
  InputSpec spec;
  DispatchArgs a = valid_dispatch(spec, keep);
  HostTensor x8(DType::kFloat8E4M3, {spec.num_tokens, spec.hidden});
  a.x = x8.view();
  expect_error(core::validate_dispatch_args(a, topo4(), DeviceKind::kCpu, spec.num_tokens),
               ErrorCode::kInvalidArgument, {"x_scales", "[T=16, H/128=2]", "got none"});
}

TEST(ValidateDispatch, ScalesWithNoUnitStrideAreRejected) {
  std::vector<HostTensor> keep;
  InputSpec spec;
  DispatchArgs a = valid_dispatch(spec, keep);
  HostTensor x8(DType::kFloat8E4M3, {spec.num_tokens, spec.hidden});
  HostTensor scales(DType::kFloat32, {spec.num_tokens, 8});
  a.x = x8.view();
  a.x_scales = TensorView::strided(scales.view().data, DType::kFloat32, {spec.num_tokens, 2},
                                   {8, 4}, DeviceKind::kCpu);
  expect_error(core::validate_dispatch_args(a, topo4(), DeviceKind::kCpu, spec.num_tokens),
               ErrorCode::kInvalidArgument,
               {"x_scales", "unit stride along one dimension", "[8, 4]"});
}

TEST(ValidateDispatch, TopkWithoutWeightsIsRejected) {
  std::vector<HostTensor> keep;
  InputSpec spec;
  DispatchArgs a = valid_dispatch(spec, keep);
  a.topk_weights = TensorView{};
  expect_error(core::validate_dispatch_args(a, topo4(), DeviceKind::kCpu, spec.num_tokens),
               ErrorCode::kInvalidArgument, {"topk_weights", "given together"});
}

TEST(ValidateDispatch, OutputRowsMustMatchReceivedCount) {
  std::vector<HostTensor> keep;
  InputSpec spec;
  const DispatchArgs a = valid_dispatch(spec, keep);
  expect_error(core::validate_dispatch_args(a, topo4(), DeviceKind::kCpu, 20),
               ErrorCode::kInvalidArgument, {"recv_x", "[N=20, H=256]", "got [16, 256]"});
}

TEST(ValidateCombine, BiasShapeMustMatchTokens) {
  const int64_t T = 4, N = 6, H = 128;
  HostTensor x(DType::kBFloat16, {N, H}), src(DType::kInt32, {N}), rpm(DType::kInt32, {2, 2}),
      in(DType::kBool, {T, 2}), slot(DType::kInt32, {T, 2}), out(DType::kBFloat16, {T, H}),
      bias(DType::kBFloat16, {T + 1, H});
  CombineArgs a;
  a.x = x.view();
  a.handle = DispatchHandle{rpm.view(), src.view(), in.view(), slot.view(), N};
  a.combined_x = out.view();
  EXPECT_TRUE(core::validate_combine_args(a, Topology{0, 2, 2}, DeviceKind::kCpu).ok());
  a.bias0 = bias.view();
  expect_error(core::validate_combine_args(a, Topology{0, 2, 2}, DeviceKind::kCpu),
               ErrorCode::kInvalidArgument, {"combine: bias0", "[T=4, H=128]", "got [5, 128]"});
}

TEST(ValidateCombine, HostRankPrefixMatrixIsAnRByRHostTensor) {
  const int64_t T = 4, N = 6, H = 128;
  HostTensor x(DType::kBFloat16, {N, H}), src(DType::kInt32, {N}), rpm(DType::kInt32, {2, 2}),
      in(DType::kBool, {T, 2}), slot(DType::kInt32, {T, 2}), out(DType::kBFloat16, {T, H}),
      host(DType::kInt32, {2, 2}), wide(DType::kInt32, {2, 3});
  CombineArgs a;
  a.x = x.view();
  a.handle = DispatchHandle{rpm.view(), src.view(), in.view(), slot.view(), N, host.view()};
  a.combined_x = out.view();
  const Topology topo{0, 2, 2};
  EXPECT_TRUE(core::validate_combine_args(a, topo, DeviceKind::kCpu).ok());
  a.handle.rank_prefix_matrix_host = wide.view();
  expect_error(core::validate_combine_args(a, topo, DeviceKind::kCpu), ErrorCode::kInvalidArgument,
               {"combine: handle.rank_prefix_matrix_host", "got [2, 3]"});
  TensorView on_device = host.view();
  on_device.device = DeviceKind::kCuda;  // the copies are sized on the host: it must be there
  a.handle.rank_prefix_matrix_host = on_device;
  expect_error(core::validate_combine_args(a, topo, DeviceKind::kCpu), ErrorCode::kInvalidArgument,
               {"handle.rank_prefix_matrix_host", "expected a cpu tensor, got a cuda tensor"});
}

TEST(ValidateLowLatency, TooManyTokensNamesNmax) {
  const int32_t R = 2, E = 4, N_max = 8, H = 128;
  HostTensor x(DType::kBFloat16, {9, H}), topk(DType::kInt64, {9, 2});
  LowLatencyDispatchArgs a;
  a.x = x.view();
  a.topk_idx = topk.view();
  a.num_max_dispatch_tokens_per_rank = N_max;
  a.num_experts = E;
  expect_error(core::validate_low_latency_dispatch_args(a, Topology{0, R, R}, DeviceKind::kCpu),
               ErrorCode::kInvalidArgument,
               {"low_latency_dispatch: x", "num_max_dispatch_tokens_per_rank=8", "got 9"});
}

TEST(ValidateLowLatency, Ue8m0RequiresRoundScale) {
  HostTensor x(DType::kBFloat16, {2, 512}), topk(DType::kInt64, {2, 2});
  LowLatencyDispatchArgs a;
  a.x = x.view();
  a.topk_idx = topk.view();
  a.num_max_dispatch_tokens_per_rank = 8;
  a.num_experts = 4;
  a.use_ue8m0 = true;
  expect_error(core::validate_low_latency_dispatch_args(a, Topology{0, 2, 2}, DeviceKind::kCpu),
               ErrorCode::kInvalidArgument, {"use_ue8m0", "round_scale=true", "round_scale=0"});
}

TEST(ValidateLowLatency, RowMajorScalesAreRejected) {
  const int64_t E_local = 2, rows = 16, H = 256;
  HostTensor x(DType::kBFloat16, {2, H}), topk(DType::kInt64, {2, 2}),
      recv(DType::kFloat8E4M3, {E_local, rows, H}),
      scales(DType::kFloat32, {E_local, rows, H / 128}), count(DType::kInt32, {E_local}),
      src(DType::kInt32, {E_local, rows}), range(DType::kInt64, {E_local, 2});
  LowLatencyDispatchArgs a;
  a.x = x.view();
  a.topk_idx = topk.view();
  a.num_max_dispatch_tokens_per_rank = 8;
  a.num_experts = 4;
  a.packed_recv_x = recv.view();
  a.packed_recv_x_scales = scales.view();  // row-major: wrong
  a.packed_recv_count = count.view();
  a.handle.src_info = src.view();
  a.handle.layout_range = range.view();
  expect_error(core::validate_low_latency_dispatch_args(a, Topology{0, 2, 2}, DeviceKind::kCpu),
               ErrorCode::kInvalidArgument,
               {"packed_recv_x_scales", "column-major", "[32, 1, 16]", "got [32, 2, 1]"});
  HostTensor col = HostTensor::column_major_last2(DType::kFloat32, {E_local, rows, H / 128});
  a.packed_recv_x_scales = col.view();
  const Error e = core::validate_low_latency_dispatch_args(a, Topology{0, 2, 2}, DeviceKind::kCpu);
  EXPECT_TRUE(e.ok()) << e.to_string();
}

TEST(ValidateLowLatency, LogFmtIsNotSupportedYet) {
  LowLatencyCombineArgs a;
  a.use_logfmt = true;
  expect_error(core::validate_low_latency_combine_args(a, Topology{0, 2, 2}, DeviceKind::kCpu),
               ErrorCode::kNotSupported, {"use_logfmt", "not supported yet"});
}

}  // namespace
}  // namespace epcomm::testing
