// Normal dispatch and combine on R GPUs against the CPU reference (semantics.md sections 1-3).
#include <chrono>
#include <random>

#include "kernels/normal_launch_policy.h"
#include "normal_case.h"

namespace epcomm::testing {
namespace {

BufferOptions normal_options(const GpuRank& r, int64_t nvl_bytes = int64_t{512} << 20,
                             double timeout = 10.0) {
  BufferOptions o = test_options(r, timeout);
  o.num_nvl_bytes = nvl_bytes;
  return o;
}

NormalCase base_case(const char* name, int64_t hidden, int32_t R) {
  NormalCase c;
  c.name = name;
  c.spec.num_tokens = 192;
  c.spec.hidden = hidden;
  c.spec.topk = 8;
  c.spec.num_experts = 16 * R;
  c.spec.mask_prob = 0.1;
  return c;
}

void run_cases(const std::vector<NormalCase>& (*make)(int32_t), uint64_t seed) {
  run_world([&](GpuRank& r) {
    auto buffer = make_buffer(r, normal_options(r));
    ASSERT_TRUE(buffer);
    const auto& cases = make(r.ctx->num_ranks);
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(cases[i].name);
      const NormalExpected want = normal_reference(cases[i], r.ctx->num_ranks, seed + i);
      run_normal_case(r, *buffer, cases[i], want);
    }
    r.ctx->host_barrier();
  });
}

const std::vector<NormalCase>& bf16_cases(int32_t R) {
  static std::vector<NormalCase> cases;
  cases.clear();
  cases.push_back(base_case("bf16 hidden 7168", 7168, R));
  auto c = base_case("bf16 hidden 2880, int32 ids, rank 1 has no tokens, 30% masked", 2880, R);
  c.spec.index_dtype = DType::kInt32;
  c.spec.mask_prob = 0.3;
  c.tokens.assign(R, 150);
  c.tokens[1] = 0;
  cases.push_back(c);
  c = base_case("bf16 hidden 2048, hot expert, alignment 4, 3 SMs", 2048, R);
  c.spec.hot_expert = 3;
  c.expert_alignment = 4;
  c.num_sms = 3;
  cases.push_back(c);
  c = base_case("bf16 hidden 4096, top-2, 24 SMs, no biases", 4096, R);
  c.spec.topk = 2;
  c.num_sms = 24;
  c.biases = false;
  cases.push_back(c);
  // 32 KB rows: two per combine sender do not fit in shared memory, so from two peers the
  // combine takes the register path instead of the staged sends (docs/perf.md, v21).
  c = base_case("bf16 hidden 16384, 24 SMs (combine register path)", 16384, R);
  c.spec.num_tokens = 96;
  c.num_sms = 24;
  cases.push_back(c);
  return cases;
}

const std::vector<NormalCase>& fp8_cases(int32_t R) {
  static std::vector<NormalCase> cases;
  cases.clear();
  auto c = base_case("fp8 hidden 7168, column-major scales", 7168, R);
  c.spec.fp8 = true;
  c.spec.column_major_scales = true;
  cases.push_back(c);
  c = base_case("fp8 hidden 4096, row-major scales, uneven tokens", 4096, R);
  c.spec.fp8 = true;
  c.tokens.clear();
  for (int32_t i = 0; i < R; ++i) c.tokens.push_back(37 + 61 * i);
  cases.push_back(c);
  // 24 and 32 SMs take the launchers' other sender splits (docs/perf.md, v12).
  c.name = "fp8 hidden 7168, row-major scales, uneven tokens, 24 SMs";
  c.spec.hidden = 7168;
  for (int32_t i = 0; i < R; ++i) c.tokens[i] = 300 + 97 * i;
  c.num_sms = 24;
  cases.push_back(c);
  c.name = "fp8 hidden 7168, row-major scales, uneven tokens, 32 SMs";
  c.num_sms = 32;
  cases.push_back(c);
  return cases;
}

const std::vector<NormalCase>& worst_cases(int32_t R) {
  static std::vector<NormalCase> cases;
  cases.clear();
  auto c = base_case("bf16 worst-case sizing", 2048, R);
  c.num_worst_tokens = c.spec.num_tokens * R;
  cases.push_back(c);
  c = base_case("fp8 worst-case sizing, hidden 7168", 7168, R);
  c.spec.fp8 = true;
  c.num_worst_tokens = c.spec.num_tokens * R + 5;
  cases.push_back(c);
  return cases;
}

TEST(GpuNormal, Bf16DispatchCombineMatchTheReference) {
  run_cases(bf16_cases, 100);
}
TEST(GpuNormal, Fp8DispatchMatchesTheReference) {
  run_cases(fp8_cases, 200);
}
TEST(GpuNormal, WorstCaseSizingMatchesTheReference) {
  run_cases(worst_cases, 300);
}

TEST(GpuNormal, CachedDispatchFollowsTheHandle) {
  run_world([](GpuRank& r) {
    auto buffer = make_buffer(r, normal_options(r));
    ASSERT_TRUE(buffer);
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
    const NormalCase c = base_case("cached", 4096, R);
    const NormalExpected want = normal_reference(c, R, 7);
    NormalDeviceRun d = run_normal_case(r, *buffer, c, want);
    // Same routing, new rows: reference by cached dispatch in the simulated world.
    reference::SimWorld world(R);
    std::vector<RankInputs> again;
    std::vector<DispatchArgs> args(R);
    std::vector<HostTensor> recv(R);
    for (int32_t s = 0; s < R; ++s) {
      again.push_back(make_inputs(c.spec, s, 8));
      recv[s] = HostTensor(DType::kBFloat16, {want.outs[s].recv_x.size(0), c.spec.hidden});
    }
    for (int32_t s = 0; s < R; ++s) {
      args[s].x = again[s].x.view();
      args[s].cached = true;
      args[s].handle = want.outs[s].handle();
      args[s].recv_x = recv[s].view();
    }
    ASSERT_TRUE(world.dispatch(args).ok());
    DeviceTensor x(again[me].x, r.device);
    DeviceTensor out = DeviceTensor::poisoned(recv[me], r.device);
    for (int iter = 0; iter < 3; ++iter) {
      DispatchArgs a;
      a.x = x.view();
      a.cached = true;
      a.handle = d.handle(d.counts.num_recv_tokens);
      a.recv_x = out.view();
      a.config.num_sms = 6;
      Error e = buffer->dispatch(a, r.stream);
      ASSERT_TRUE(e.ok()) << e.to_string();
      e = buffer->synchronize(r.stream);
      ASSERT_TRUE(e.ok()) << e.to_string();
      expect_rows_equal(out.download(), recv[me], -1, "cached recv_x");
    }
    r.ctx->host_barrier();
  });
}

// FNV-1a over a tensor's bytes.
uint64_t hash_bytes(const HostTensor& t, uint64_t h) {
  for (uint8_t b : t.bytes()) h = (h ^ b) * 1099511628211ull;
  return h;
}

TEST(GpuNormal, TwoHundredRandomSizedIterationsHashTheSameTwice) {
  run_world(
      [](GpuRank& r) {
        auto buffer = make_buffer(r, normal_options(r, int64_t{256} << 20));
        ASSERT_TRUE(buffer);
        const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
        std::vector<uint64_t> hashes[2];
        for (int run = 0; run < 2; ++run) {
          for (int iter = 0; iter < 200; ++iter) {
            std::mt19937 rng(iter * 7 + 1);  // same on every rank: all ranks agree on sizes
            NormalCase c = base_case("iteration", 512 + 128 * (iter % 3), R);
            c.tokens.clear();
            for (int32_t s = 0; s < R; ++s) c.tokens.push_back(rng() % 257);
            c.num_sms = 2 + iter % 7;
            const uint64_t seed = 1000 + iter;
            // Inputs for this rank only (the reference runs on a sample of iterations).
            std::vector<RankInputs> ins;
            InputSpec s = c.spec;
            s.num_tokens = c.tokens[me];
            const RankInputs in = make_inputs(s, me, seed);
            const int64_t T = in.x.size(0), H = c.spec.hidden, K = c.spec.topk;
            DeviceTensor x(in.x, r.device), topk(in.topk_idx, r.device),
                w(in.topk_weights, r.device);
            LayoutOutputs lo = make_layout_outputs(T, R, c.spec.num_experts);
            DeviceTensor per_rank(lo.num_tokens_per_rank, r.device),
                per_expert(lo.num_tokens_per_expert, r.device),
                in_rank(lo.is_token_in_rank, r.device);
            DeviceTensor rpm(HostTensor(DType::kInt32, {R, R}), r.device),
                slot(HostTensor(DType::kInt32, {T, R}), r.device);
            LayoutArgs la{topk.view(), c.spec.num_experts, per_rank.view(),
                          {},          per_expert.view(),  in_rank.view()};
            ASSERT_TRUE(buffer->get_dispatch_layout(la, r.stream).ok());
            DispatchHandle h{rpm.view(), {}, in_rank.view(), slot.view(), 0};
            DispatchCounts counts;
            Error e = buffer->dispatch_notify(
                {per_rank.view(), per_expert.view(), in_rank.view(), 1, {}, h}, &counts, r.stream);
            ASSERT_TRUE(e.ok()) << e.to_string();
            const int64_t N = counts.num_recv_tokens;
            DeviceTensor src(HostTensor(DType::kInt32, {N}), r.device),
                rx(HostTensor(DType::kBFloat16, {N, H}), r.device),
                ri(HostTensor(DType::kInt64, {N, K}), r.device),
                rw(HostTensor(DType::kFloat32, {N, K}), r.device),
                out(HostTensor(DType::kBFloat16, {T, H}), r.device),
                ow(HostTensor(DType::kFloat32, {T, K}), r.device);
            h.recv_src_idx = src.view();
            h.num_recv_tokens = N;
            DispatchArgs da;
            da.x = x.view();
            da.topk_idx = topk.view();
            da.topk_weights = w.view();
            da.num_tokens_per_rank = per_rank.view();
            da.num_tokens_per_expert = per_expert.view();
            da.is_token_in_rank = in_rank.view();
            da.num_experts = c.spec.num_experts;
            da.config.num_sms = c.num_sms;
            da.handle = h;
            da.recv_x = rx.view();
            da.recv_topk_idx = ri.view();
            da.recv_topk_weights = rw.view();
            ASSERT_TRUE(buffer->dispatch(da, r.stream).ok());
            CombineArgs ca;
            ca.x = rx.view();
            ca.handle = h;
            ca.topk_weights = rw.view();
            ca.config.num_sms = c.num_sms;
            ca.combined_x = out.view();
            ca.combined_topk_weights = ow.view();
            ASSERT_TRUE(buffer->combine(ca, r.stream).ok());
            e = buffer->synchronize(r.stream);
            ASSERT_TRUE(e.ok()) << "iteration " << iter << ": " << e.to_string();
            uint64_t hsh = 14695981039346656037ull;
            hsh = hash_bytes(rx.download(), hsh);
            hsh = hash_bytes(out.download(), hsh);
            hsh = hash_bytes(ow.download(), hsh);
            hashes[run].push_back(hsh);
            if (run == 0 && iter % 50 == 0) {  // spot-check against the reference
              const NormalExpected want = normal_reference(c, R, seed);
              expect_rows_equal(rx.download(), want.outs[me].recv_x, -1, "iteration recv_x");
            }
          }
        }
        EXPECT_EQ(hashes[0], hashes[1]) << "outputs differ between two identical runs";
        r.ctx->host_barrier();
      },
      test_num_ranks(), 400);
}

// One rank's part of a reference dispatch on the device: its inputs and layout outputs, and the
// reference's handle and receive tensors (where the error tests start from a valid call).
struct ReferenceDispatch {
  ReferenceDispatch(const NormalExpected& want, int32_t me, int device)
      : x(want.inputs[me].x, device),
        topk(want.inputs[me].topk_idx, device),
        weights(want.inputs[me].topk_weights, device),
        per_rank(want.layouts[me].num_tokens_per_rank, device),
        per_expert(want.layouts[me].num_tokens_per_expert, device),
        in_rank(want.layouts[me].is_token_in_rank, device),
        rpm(want.outs[me].rank_prefix_matrix, device),
        slot(want.outs[me].send_slot, device),
        src(want.outs[me].recv_src_idx, device),
        recv_x(want.outs[me].recv_x, device),
        recv_topk(want.outs[me].recv_topk_idx, device),
        recv_w(want.outs[me].recv_topk_weights, device),
        num_recv(want.outs[me].counts.num_recv_tokens) {}
  DispatchHandle handle() const {
    return {rpm.view(), src.view(), in_rank.view(), slot.view(), num_recv};
  }
  DispatchNotifyArgs notify() const {
    return {per_rank.view(), per_expert.view(), in_rank.view(), 1, {}, handle()};
  }
  // A full (non-cached) dispatch into the reference's receive tensors; top-k and its received
  // copies when with_topk.
  DispatchArgs args(int32_t num_experts, bool with_topk) const {
    DispatchArgs da;
    da.x = x.view();
    da.num_tokens_per_rank = per_rank.view();
    da.num_tokens_per_expert = per_expert.view();
    da.is_token_in_rank = in_rank.view();
    da.num_experts = num_experts;
    da.handle = handle();
    da.recv_x = recv_x.view();
    if (with_topk) {
      da.topk_idx = topk.view();
      da.topk_weights = weights.view();
      da.recv_topk_idx = recv_topk.view();
      da.recv_topk_weights = recv_w.view();
    }
    return da;
  }
  DeviceTensor x, topk, weights, per_rank, per_expert, in_rank;
  DeviceTensor rpm, slot, src, recv_x, recv_topk, recv_w;
  int64_t num_recv;
};

TEST(GpuNormal, BadInputsAreRejectedWithClearErrors) {
  run_world([](GpuRank& r) {
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
    // Buffer too small for the rows: every rank refuses before launching (same counts everywhere).
    auto small = make_buffer(r, normal_options(r, int64_t{1} << 20));
    ASSERT_TRUE(small);
    NormalCase c = base_case("too small", 7168, R);
    const NormalExpected want = normal_reference(c, R, 5);
    const ReferenceDispatch d(want, me, r.device);
    const DispatchArgs da = d.args(c.spec.num_experts, /*with_topk=*/true);
    Error e = small->dispatch(da, r.stream);
    EXPECT_EQ(e.code(), ErrorCode::kBufferTooSmall) << e.to_string();
    EXPECT_NE(e.message().find("num_nvl_bytes"), std::string::npos) << e.message();
    // Wrong dtype of x: caught before launch.
    DispatchArgs bad = da;
    bad.x.dtype = DType::kFloat32;
    e = small->dispatch(bad, r.stream);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(e.message().find("x: expected dtype bfloat16 or float8_e4m3fn, got float32"),
              std::string::npos)
        << e.message();
    // Too many SMs for the device.
    bad = da;
    bad.config.num_sms = 100000;
    EXPECT_EQ(small->dispatch(bad, r.stream).code(), ErrorCode::kInvalidArgument);
    r.ctx->host_barrier();
    EXPECT_TRUE(small->destroy().ok());

    // An out-of-range expert id in device memory: found by the layout kernel, reported by the
    // next host wait on that rank; the other ranks complete.
    auto buffer = make_buffer(r, normal_options(r, int64_t{256} << 20, 5.0));
    ASSERT_TRUE(buffer);
    HostTensor bad_topk = want.inputs[me].topk_idx;
    if (me == 0) bad_topk.at<int64_t>({3, 2}) = c.spec.num_experts + 5;
    DeviceTensor topk2(bad_topk, r.device);
    LayoutArgs la{topk2.view(), c.spec.num_experts,  d.per_rank.view(),
                  {},           d.per_expert.view(), d.in_rank.view()};
    ASSERT_TRUE(buffer->get_dispatch_layout(la, r.stream).ok());
    DispatchCounts counts;
    e = buffer->dispatch_notify(d.notify(), &counts, r.stream);
    if (me == 0) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
      EXPECT_NE(e.message().find("topk_idx: expected -1 or an expert id in [0, " +
                                 std::to_string(c.spec.num_experts) + "), got " +
                                 std::to_string(c.spec.num_experts + 5) + " at flat position 26"),
                std::string::npos)
          << e.message();
    } else {
      EXPECT_TRUE(e.ok()) << e.to_string();
    }
    r.ctx->host_barrier();
  });
}

TEST(GpuNormal, HiddenMismatchAcrossRanksIsReportedNotSilentlyCorrupted) {
  run_world([](GpuRank& r) {
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
    auto buffer = make_buffer(r, normal_options(r, int64_t{256} << 20, 5.0));
    ASSERT_TRUE(buffer);
    NormalCase c = base_case("mismatch", me == 1 ? 2048 : 4096, R);
    const NormalExpected want = normal_reference(c, R, 9);  // routing identical on all ranks
    const ReferenceDispatch d(want, me, r.device);
    DispatchCounts counts;
    ASSERT_TRUE(buffer->dispatch_notify(d.notify(), &counts, r.stream).ok());
    ASSERT_TRUE(buffer->dispatch(d.args(c.spec.num_experts, /*with_topk=*/true), r.stream).ok());
    const Error e = buffer->synchronize(r.stream);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
    EXPECT_NE(e.message().find("called with a different hidden size"), std::string::npos)
        << e.message();
    r.ctx->host_barrier();
  });
}

// A host copy of rank_prefix_matrix that no longer matches the device matrix sizes the combine's
// copies wrongly: the copy-start kernel compares them, reports the mismatch on that rank, and
// marks none of its rows as arrived, so its peers time out naming it instead of reducing rows
// from the wrong places (semantics.md section 3).
TEST(GpuNormal, StaleHostRankPrefixMatrixIsReportedNotSilentlyUsed) {
  run_world([](GpuRank& r) {
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
    const NormalCase c = base_case("stale host matrix", 2048, R);
    if (kernels::combine_copy_policy(R, c.num_sms, true, true, kernels::combine_knobs_from_env())
            .chunks == 0)
      GTEST_SKIP() << "the combine sends with the copy engines (which use the host matrix) only "
                      "with one peer or EPCOMM_COMBINE_COPY=1";
    auto buffer = make_buffer(r, normal_options(r, int64_t{256} << 20, 2.0));
    ASSERT_TRUE(buffer);
    const NormalExpected want = normal_reference(c, R, 11);
    NormalDeviceRun d = run_normal_case(r, *buffer, c, want);  // a good call first
    ASSERT_EQ(d.rpm_host.size(), static_cast<size_t>(R) * R);
    // Rank 0 moves one of its rows from source 0 to source 1: the total it receives stays the
    // same (the host's own checks pass), the rows per source do not.
    if (me == 0) d.rpm_host[0] -= 1;
    CombineArgs ca;
    ca.x = d.expert_x.view();
    ca.handle = d.handle(d.counts.num_recv_tokens);
    ca.topk_weights = d.recv_w.view();
    ca.config.num_sms = c.num_sms;
    ca.combined_x = d.combined.view();
    ca.combined_topk_weights = d.combined_w.view();
    Error e = buffer->combine(ca, r.stream);
    if (e.ok()) e = buffer->synchronize(r.stream);
    if (me == 0) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
      EXPECT_NE(e.message().find("rank_prefix_matrix_host"), std::string::npos) << e.message();
    } else {
      EXPECT_EQ(e.code(), ErrorCode::kTimeout) << e.to_string();
      EXPECT_NE(e.message().find("rank 0"), std::string::npos) << e.message();
    }
    r.ctx->host_barrier();
  });
}

TEST(GpuNormal, RankSkippingADispatchIsNamedByTheOthers) {
  run_world([](GpuRank& r) {
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank, missing = R - 1;
    const double timeout = 2.0;
    auto buffer = make_buffer(r, normal_options(r, int64_t{256} << 20, timeout));
    ASSERT_TRUE(buffer);
    NormalCase c = base_case("skip", 1024, R);
    const NormalExpected want = normal_reference(c, R, 3);
    const ReferenceDispatch d(want, me, r.device);
    DispatchCounts counts;
    ASSERT_TRUE(buffer->dispatch_notify(d.notify(), &counts, r.stream).ok());
    if (me != missing) {
      const DispatchArgs da = d.args(c.spec.num_experts, /*with_topk=*/false);
      const auto start = std::chrono::steady_clock::now();
      ASSERT_TRUE(buffer->dispatch(da, r.stream).ok());
      const Error e = buffer->synchronize(r.stream);
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_EQ(e.code(), ErrorCode::kTimeout) << e.to_string();
      EXPECT_NE(e.message().find("dispatch on rank " + std::to_string(me)), std::string::npos)
          << e.message();
      EXPECT_NE(e.message().find("waiting for rank " + std::to_string(missing)), std::string::npos)
          << e.message();
      EXPECT_LT(took, 2 * timeout);
      std::printf("[rank %d] skipped-dispatch error after %.2f s: %s\n", me, took,
                  e.to_string().c_str());
    }
    r.ctx->host_barrier();
  });
}

TEST(GpuNormal, CudaGraphReplaysTheWorstCaseDispatchAndCombineWithNewInputs) {
  run_world([](GpuRank& r) {
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
    auto buffer = make_buffer(r, normal_options(r, int64_t{256} << 20));
    ASSERT_TRUE(buffer);
    NormalCase c = base_case("graph", 1024, R);
    c.num_worst_tokens = c.spec.num_tokens * R;
    c.biases = false;
    const NormalExpected first = normal_reference(c, R, 50);  // routing of every replay
    const RankInputs& in = first.inputs[me];
    const DispatchOutputs& ref = first.outs[me];
    DeviceTensor x(in.x, r.device), topk(in.topk_idx, r.device), w(in.topk_weights, r.device);
    DeviceTensor per_rank(first.layouts[me].num_tokens_per_rank, r.device),
        per_expert(first.layouts[me].num_tokens_per_expert, r.device),
        in_rank(first.layouts[me].is_token_in_rank, r.device);
    DeviceTensor rpm = DeviceTensor::poisoned(ref.rank_prefix_matrix, r.device),
                 slot = DeviceTensor::poisoned(ref.send_slot, r.device),
                 in_copy = DeviceTensor::poisoned(ref.is_token_in_rank, r.device),
                 src = DeviceTensor::poisoned(ref.recv_src_idx, r.device),
                 rx = DeviceTensor::poisoned(ref.recv_x, r.device),
                 ri = DeviceTensor::poisoned(ref.recv_topk_idx, r.device),
                 rw = DeviceTensor::poisoned(ref.recv_topk_weights, r.device),
                 out = DeviceTensor::poisoned(first.combined[me], r.device),
                 ow = DeviceTensor::poisoned(first.combined_w[me], r.device);
    DispatchHandle h{rpm.view(), src.view(), in_copy.view(), slot.view(), 0};
    DispatchArgs da;
    da.x = x.view();
    da.topk_idx = topk.view();
    da.topk_weights = w.view();
    da.num_tokens_per_rank = per_rank.view();
    da.num_tokens_per_expert = per_expert.view();
    da.is_token_in_rank = in_rank.view();
    da.num_experts = c.spec.num_experts;
    da.num_worst_tokens = c.num_worst_tokens;
    da.config.num_sms = 8;
    da.handle = h;
    da.recv_x = rx.view();
    da.recv_topk_idx = ri.view();
    da.recv_topk_weights = rw.view();
    CombineArgs ca;
    ca.x = rx.view();
    ca.handle = h;
    ca.topk_weights = rw.view();
    ca.config.num_sms = 8;
    ca.combined_x = out.view();
    ca.combined_topk_weights = ow.view();
    // Capture dispatch (count exchange included: no host wait) and combine in one graph.
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(r.stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    const Error de = buffer->dispatch(da, r.stream);
    const Error ce = buffer->combine(ca, r.stream);
    ASSERT_EQ(cudaStreamEndCapture(r.stream, &graph), cudaSuccess);
    ASSERT_TRUE(de.ok()) << de.to_string();
    ASSERT_TRUE(ce.ok()) << ce.to_string();
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    for (int replay = 0; replay < 10; ++replay) {
      // New rows on every rank before each replay; the routing stays that of `first`.
      std::vector<RankInputs> inputs = first.inputs;
      for (int32_t s = 0; s < R; ++s)
        inputs[s].x = random_bf16(inputs[s].x.size(0), c.spec.hidden, 7000 + 97 * replay + s);
      const NormalExpected want = normal_reference_with(inputs, c, R, 50);
      x.upload(inputs[me].x);
      ASSERT_EQ(cudaGraphLaunch(exec, r.stream), cudaSuccess);
      const Error e = buffer->synchronize(r.stream);
      ASSERT_TRUE(e.ok()) << "replay " << replay << ": " << e.to_string();
      const int64_t real = want.outs[me].rank_prefix_matrix.at<int32_t>({R - 1, me});
      expect_rows_equal(rx.download(), want.outs[me].recv_x, real, "graph replay recv_x");
      expect_rows_equal(ri.download(), want.outs[me].recv_topk_idx, -1,
                        "graph replay recv_topk_idx");
      expect_rows_equal(out.download(), want.combined[me], -1, "graph replay combined_x");
      r.ctx->host_barrier();  // every rank checked before anyone uploads the next rows
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    r.ctx->host_barrier();
  });
}

TEST(GpuNormal, MoreRowsThanNumWorstTokensIsReported) {
  run_world([](GpuRank& r) {
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
    auto buffer = make_buffer(r, normal_options(r, int64_t{256} << 20, 5.0));
    ASSERT_TRUE(buffer);
    // The reference (a valid call) gives the handle; only the GPU call asks for 10 rows, and
    // every rank receives far more.
    const NormalCase c = base_case("too many rows", 1024, R);
    const NormalExpected want = normal_reference(c, R, 11);
    const RankInputs& in = want.inputs[me];
    DeviceTensor x(in.x, r.device), per_rank(want.layouts[me].num_tokens_per_rank, r.device),
        per_expert(want.layouts[me].num_tokens_per_expert, r.device),
        in_rank(want.layouts[me].is_token_in_rank, r.device);
    HostTensor rows10(DType::kBFloat16, {10, c.spec.hidden}), src10(DType::kInt32, {10});
    DeviceTensor rpm(want.outs[me].rank_prefix_matrix, r.device),
        slot(want.outs[me].send_slot, r.device), in_copy(want.outs[me].is_token_in_rank, r.device),
        src(src10, r.device), rx(rows10, r.device);
    DispatchArgs da;
    da.x = x.view();
    da.num_tokens_per_rank = per_rank.view();
    da.num_tokens_per_expert = per_expert.view();
    da.is_token_in_rank = in_rank.view();
    da.num_experts = c.spec.num_experts;
    da.num_worst_tokens = 10;
    da.handle = DispatchHandle{rpm.view(), src.view(), in_copy.view(), slot.view(), 0};
    da.recv_x = rx.view();
    ASSERT_TRUE(buffer->dispatch(da, r.stream).ok());
    const Error e = buffer->synchronize(r.stream);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
    EXPECT_NE(e.message().find("num_worst_tokens: expected at least the"), std::string::npos)
        << e.message();
    r.ctx->host_barrier();
  });
}

}  // namespace
}  // namespace epcomm::testing
