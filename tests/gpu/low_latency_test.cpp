// Low-latency dispatch and combine on R GPUs against the CPU reference (semantics.md 4-5).
// Rows are compared through src_info and layout_range, never by position.
#include <cstdlib>
#include <cstring>
#include <map>

#include "normal_case.h"

namespace epcomm::testing {
namespace {

struct LlCase {
  const char* name;
  int32_t n_max = 32;
  int64_t hidden = 1024;
  int64_t topk = 8;
  int32_t experts_per_rank = 8;
  bool fp8 = true, round_scale = false, ue8m0 = false;
  int32_t hot_expert = -1;
  bool zero_tokens_on_rank1 = false;
};

struct LlExpected {
  std::vector<RankInputs> inputs;
  std::vector<HostTensor> recv_x, scales, count, src_info, range, out;
};

LlExpected ll_reference(const LlCase& c, int32_t R, uint64_t seed) {
  LlExpected x;
  reference::SimWorld world(R);
  const int32_t E = c.experts_per_rank * R;
  const int64_t rows = int64_t{R} * c.n_max, G = c.ue8m0 ? c.hidden / 512 : c.hidden / 128;
  std::vector<LowLatencyDispatchArgs> d(R);
  for (int32_t r = 0; r < R; ++r) {
    InputSpec s;
    s.num_tokens = (c.zero_tokens_on_rank1 && r == 1) ? 0 : c.n_max - r;
    s.hidden = c.hidden;
    s.topk = c.topk;
    s.num_experts = E;
    s.hot_expert = c.hot_expert;
    x.inputs.push_back(make_inputs(s, r, seed));
    x.recv_x.emplace_back(c.fp8 ? DType::kFloat8E4M3 : DType::kBFloat16,
                          std::vector<int64_t>{c.experts_per_rank, rows, c.hidden});
    x.scales.push_back(
        c.fp8 ? HostTensor::column_major_last2(c.ue8m0 ? DType::kInt32 : DType::kFloat32,
                                               {c.experts_per_rank, rows, G})
              : HostTensor());
    x.count.emplace_back(DType::kInt32, std::vector<int64_t>{c.experts_per_rank});
    x.src_info.emplace_back(DType::kInt32, std::vector<int64_t>{c.experts_per_rank, rows});
    x.range.emplace_back(DType::kInt64, std::vector<int64_t>{c.experts_per_rank, R});
  }
  for (int32_t r = 0; r < R; ++r) {
    d[r].x = x.inputs[r].x.view();
    d[r].topk_idx = x.inputs[r].topk_idx.view();
    d[r].num_max_dispatch_tokens_per_rank = c.n_max;
    d[r].num_experts = E;
    d[r].use_fp8 = c.fp8;
    d[r].round_scale = c.round_scale;
    d[r].use_ue8m0 = c.ue8m0;
    d[r].packed_recv_x = x.recv_x[r].view();
    if (c.fp8) d[r].packed_recv_x_scales = x.scales[r].view();
    d[r].packed_recv_count = x.count[r].view();
    d[r].handle = LowLatencyHandle{x.src_info[r].view(), x.range[r].view(), c.n_max,
                                   static_cast<int32_t>(c.hidden), E};
  }
  const Error e = world.low_latency_dispatch(d);
  EXPECT_TRUE(e.ok()) << e.to_string();
  if (!c.fp8) {  // combine of identity experts (expert output = received bf16 row)
    std::vector<LowLatencyCombineArgs> cb(R);
    for (int32_t r = 0; r < R; ++r)
      x.out.emplace_back(DType::kBFloat16, std::vector<int64_t>{x.inputs[r].x.size(0), c.hidden});
    for (int32_t r = 0; r < R; ++r) {
      cb[r].x = x.recv_x[r].view();
      cb[r].topk_idx = x.inputs[r].topk_idx.view();
      cb[r].topk_weights = x.inputs[r].topk_weights.view();
      cb[r].handle = d[r].handle;
      cb[r].out = x.out[r].view();
    }
    const Error ce = world.low_latency_combine(cb);
    EXPECT_TRUE(ce.ok()) << ce.to_string();
  }
  return x;
}

// Byte rows of (expert j, source s) keyed by source token, from a dispatch's outputs.
std::map<int32_t, std::vector<uint8_t>> rows_of(const HostTensor& recv, const HostTensor& scales,
                                                const HostTensor& src, const HostTensor& range,
                                                int32_t j, int32_t s, int64_t row_bytes,
                                                int64_t G) {
  std::map<int32_t, std::vector<uint8_t>> out;
  const int64_t r = range.at<int64_t>({j, s});
  const int64_t rows = src.size(1);
  for (int64_t i = r >> 32; i < (r >> 32) + (r & 0xffffffff); ++i) {
    const uint8_t* p = recv.bytes().data() + (j * rows + i) * row_bytes;
    std::vector<uint8_t> bytes(p, p + row_bytes);
    for (int64_t g = 0; scales.defined() && g < G; ++g) {
      const int32_t v = scales.dtype() == DType::kInt32 ? scales.at<int32_t>({j, i, g}) : [&] {
        int32_t b;
        std::memcpy(&b, &scales.at<float>({j, i, g}), 4);
        return b;
      }();
      bytes.insert(bytes.end(), reinterpret_cast<const uint8_t*>(&v),
                   reinterpret_cast<const uint8_t*>(&v) + 4);
    }
    out[src.at<int32_t>({j, i})] = bytes;
  }
  return out;
}

void run_ll_case(GpuRank& r, Buffer& buffer, const LlCase& c, uint64_t seed, bool hook,
                 bool zero_copy) {
  const int32_t R = r.ctx->num_ranks, me = r.ctx->rank, E = c.experts_per_rank * R;
  const LlExpected want = ll_reference(c, R, seed);
  const RankInputs& in = want.inputs[me];
  const int64_t G = c.ue8m0 ? c.hidden / 512 : c.hidden / 128;
  DeviceTensor x(in.x, r.device), topk(in.topk_idx, r.device), w(in.topk_weights, r.device);
  DeviceTensor rx = DeviceTensor::poisoned(want.recv_x[me], r.device),
               count = DeviceTensor::poisoned(want.count[me], r.device),
               src = DeviceTensor::poisoned(want.src_info[me], r.device),
               range = DeviceTensor::poisoned(want.range[me], r.device);
  DeviceTensor sc = c.fp8 ? DeviceTensor::poisoned(want.scales[me], r.device) : DeviceTensor();
  LowLatencyDispatchArgs a;
  a.x = x.view();
  a.topk_idx = topk.view();
  a.num_max_dispatch_tokens_per_rank = c.n_max;
  a.num_experts = E;
  a.use_fp8 = c.fp8;
  a.round_scale = c.round_scale;
  a.use_ue8m0 = c.ue8m0;
  a.return_recv_hook = hook;
  a.packed_recv_x = rx.view();
  if (c.fp8) a.packed_recv_x_scales = sc.view();
  a.packed_recv_count = count.view();
  a.handle = LowLatencyHandle{src.view(), range.view(), c.n_max, static_cast<int32_t>(c.hidden), E};
  LowLatencyHook h;
  Error e = buffer.low_latency_dispatch(a, r.stream, &h);
  ASSERT_TRUE(e.ok()) << e.to_string();
  if (hook) ASSERT_TRUE(buffer.run_low_latency_hook(h, r.stream).ok());
  e = buffer.synchronize(r.stream);
  ASSERT_TRUE(e.ok()) << c.name << ": " << e.to_string();
  const HostTensor got_x = rx.download(), got_count = count.download(), got_src = src.download(),
                   got_range = range.download();
  const HostTensor got_sc = c.fp8 ? sc.download() : HostTensor();
  expect_rows_equal(got_count, want.count[me], -1, std::string(c.name) + " recv_count");
  expect_rows_equal(got_range, want.range[me], -1, std::string(c.name) + " layout_range");
  const int64_t row_bytes = c.fp8 ? c.hidden : c.hidden * 2;
  for (int32_t j = 0; j < c.experts_per_rank; ++j)
    for (int32_t s = 0; s < R; ++s)
      EXPECT_EQ(rows_of(got_x, got_sc, got_src, got_range, j, s, row_bytes, c.fp8 ? G : 0),
                rows_of(want.recv_x[me], want.scales[me], want.src_info[me], want.range[me], j, s,
                        row_bytes, c.fp8 ? G : 0))
          << c.name << ": rows of local expert " << j << " from rank " << s;
  if (c.fp8) return;
  // Combine of identity experts: the expert outputs are the received rows.
  DeviceTensor out = DeviceTensor::poisoned(want.out[me], r.device);
  LowLatencyCombineArgs cb;
  cb.topk_idx = topk.view();
  cb.topk_weights = w.view();
  cb.handle = a.handle;
  cb.return_recv_hook = hook;
  cb.out = out.view();
  if (zero_copy) {
    TensorView view;
    ASSERT_TRUE(buffer.get_next_low_latency_combine_buffer(cb.handle, &view).ok());
    // On the combine's stream: a device-to-device cudaMemcpy may return before it is done, and
    // the legacy stream it uses does not order the non-blocking test stream.
    ASSERT_EQ(cudaMemcpyAsync(view.data, rx.data(), got_x.bytes().size(), cudaMemcpyDeviceToDevice,
                              r.stream),
              cudaSuccess);
    cb.zero_copy = true;
  } else {
    cb.x = rx.view();
  }
  e = buffer.low_latency_combine(cb, r.stream, &h);
  ASSERT_TRUE(e.ok()) << e.to_string();
  if (hook) ASSERT_TRUE(buffer.run_low_latency_hook(h, r.stream).ok());
  e = buffer.synchronize(r.stream);
  ASSERT_TRUE(e.ok()) << c.name << " combine: " << e.to_string();
  const HostTensor got_out = out.download();
  for (int64_t t = 0; t < got_out.size(0); ++t)
    for (int64_t hh = 0; hh < c.hidden; ++hh) {
      const float g = f32(got_out.at<uint16_t>({t, hh})),
                  ref = f32(want.out[me].at<uint16_t>({t, hh}));
      ASSERT_LE(std::fabs(g - ref), std::fabs(ref) * 0.01f + 1e-3f)
          << c.name << " combined token " << t << " ch " << hh;
    }
}

BufferOptions ll_options(const GpuRank& r, const LlCase& c, double timeout = 10.0) {
  BufferOptions o = test_options(r, timeout);
  o.num_rdma_bytes =
      get_low_latency_buffer_size_hint(c.n_max, static_cast<int32_t>(c.hidden), r.ctx->num_ranks,
                                       c.experts_per_rank * r.ctx->num_ranks);
  o.low_latency_mode = true;
  return o;
}

TEST(GpuLowLatency, DispatchAndCombineMatchTheReference) {
  run_world([](GpuRank& r) {
    std::vector<LlCase> cases = {
        {.name = "bf16", .fp8 = false},
        {.name = "fp8"},
        {.name = "fp8 round_scale", .round_scale = true},
        {.name = "fp8 ue8m0", .hidden = 2048, .round_scale = true, .ue8m0 = true},
        {.name = "bf16 skewed, rank 1 idle",
         .fp8 = false,
         .hot_expert = 3,
         .zero_tokens_on_rank1 = true},
        {.name = "fp8 top-16 of 4 per rank, hidden 7168",
         .hidden = 7168,
         .topk = 16,
         .experts_per_rank = 4},
        // A hidden that is a multiple of 128 but not of 256: the combine's last 256-channel slice
        // is half full.
        {.name = "fp8 hidden 640", .hidden = 640},
        // Messages longer than one register batch of the receiving warp (LL v15): two payload
        // batches in BF16 at 7168, three and two scale chunks in FP8 at 16512.
        {.name = "bf16 hidden 7168", .hidden = 7168, .fp8 = false},
        {.name = "fp8 hidden 16512", .hidden = 16512},
        // The pre-reduced combine's row listing past 48 KB of shared memory with its static
        // tables from 3 ranks (a launch that needs its limit raised).
        {.name = "bf16 N_max 128, top-16, hidden 7168",
         .n_max = 128,
         .hidden = 7168,
         .topk = 16,
         .fp8 = false},
    };
    LlCase biggest{.name = "size", .n_max = 128, .hidden = 16512, .topk = 16};
    auto buffer = make_buffer(r, ll_options(r, biggest));
    ASSERT_TRUE(buffer);
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(cases[i].name);
      run_ll_case(r, *buffer, cases[i], 900 + i, /*hook=*/false, /*zero_copy=*/false);
    }
    r.ctx->host_barrier();
  });
}

TEST(GpuLowLatency, HookModeAndZeroCopyMatchTheReference) {
  run_world([](GpuRank& r) {
    LlCase c{.name = "bf16 hook", .fp8 = false};
    auto buffer = make_buffer(r, ll_options(r, c));
    ASSERT_TRUE(buffer);
    for (int i = 0; i < 6; ++i)
      run_ll_case(r, *buffer, c, 950 + i, /*hook=*/i % 2 == 0, /*zero_copy=*/i % 3 == 0);
    r.ctx->host_barrier();
  });
}

TEST(GpuLowLatency, RankThatStopsIsNamedWithinTheTimeout) {
  run_world([](GpuRank& r) {
    LlCase c{.name = "stop", .fp8 = false};
    const double timeout = 2.0;
    auto buffer = make_buffer(r, ll_options(r, c, timeout));
    ASSERT_TRUE(buffer);
    const int32_t missing = r.ctx->num_ranks - 1;
    if (r.ctx->rank != missing) {
      const LlExpected want = ll_reference(c, r.ctx->num_ranks, 3);
      const RankInputs& in = want.inputs[r.ctx->rank];
      DeviceTensor x(in.x, r.device), topk(in.topk_idx, r.device),
          rx(want.recv_x[r.ctx->rank], r.device), count(want.count[r.ctx->rank], r.device),
          src(want.src_info[r.ctx->rank], r.device), range(want.range[r.ctx->rank], r.device);
      LowLatencyDispatchArgs a;
      a.x = x.view();
      a.topk_idx = topk.view();
      a.num_max_dispatch_tokens_per_rank = c.n_max;
      a.num_experts = c.experts_per_rank * r.ctx->num_ranks;
      a.use_fp8 = false;
      a.packed_recv_x = rx.view();
      a.packed_recv_count = count.view();
      a.handle = LowLatencyHandle{src.view(), range.view(), c.n_max, static_cast<int32_t>(c.hidden),
                                  a.num_experts};
      ASSERT_TRUE(buffer->low_latency_dispatch(a, r.stream, nullptr).ok());
      const Error e = buffer->synchronize(r.stream);
      EXPECT_EQ(e.code(), ErrorCode::kTimeout) << e.to_string();
      EXPECT_NE(e.message().find("waiting for rank " + std::to_string(missing)), std::string::npos)
          << e.message();
    }
    r.ctx->host_barrier();
  });
}

// Semantics.md section 7 for the low-latency ops: T > N_max is rejected before launch; an
// out-of-range expert id is found on the GPU and reported; a hidden size that differs between
// ranks is reported by every rank (as a mismatch, or as a wait for the rank that differs), never
// silently mixed.
TEST(GpuLowLatency, BadInputsAreRejectedOrReported) {
  run_world([](GpuRank& r) {
    const int32_t R = r.ctx->num_ranks, me = r.ctx->rank;
    LlCase c{.name = "bad", .fp8 = false};
    LlCase wide = c;
    wide.hidden = 2048;
    const LlExpected want = ll_reference(c, R, 77), want_wide = ll_reference(wide, R, 77);
    auto dispatch_args = [&](const LlExpected& w, const LlCase& cs, std::vector<DeviceTensor>& keep,
                             const HostTensor& topk_host) {
      const RankInputs& in = w.inputs[me];
      keep.clear();
      keep.emplace_back(in.x, r.device);
      keep.emplace_back(topk_host, r.device);
      keep.emplace_back(w.recv_x[me], r.device);
      keep.emplace_back(w.count[me], r.device);
      keep.emplace_back(w.src_info[me], r.device);
      keep.emplace_back(w.range[me], r.device);
      LowLatencyDispatchArgs a;
      a.x = keep[0].view();
      a.topk_idx = keep[1].view();
      a.num_max_dispatch_tokens_per_rank = cs.n_max;
      a.num_experts = cs.experts_per_rank * R;
      a.use_fp8 = false;
      a.packed_recv_x = keep[2].view();
      a.packed_recv_count = keep[3].view();
      a.handle = LowLatencyHandle{keep[4].view(), keep[5].view(), cs.n_max,
                                  static_cast<int32_t>(cs.hidden), a.num_experts};
      return a;
    };
    std::vector<DeviceTensor> keep;
    {
      auto buffer = make_buffer(r, ll_options(r, wide, 5.0));
      ASSERT_TRUE(buffer);
      // T > N_max: x has N_max - rank rows; claim N_max = 4.
      LowLatencyDispatchArgs a = dispatch_args(want, c, keep, want.inputs[me].topk_idx);
      a.num_max_dispatch_tokens_per_rank = 4;
      a.handle.num_max_dispatch_tokens_per_rank = 4;
      Error e = buffer->low_latency_dispatch(a, r.stream, nullptr);
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
      EXPECT_NE(e.message().find("num_max_dispatch_tokens_per_rank"), std::string::npos)
          << e.message();
      // Hidden differs on the last rank: every rank reports an error within the timeout.
      a = (me == R - 1) ? dispatch_args(want_wide, wide, keep, want_wide.inputs[me].topk_idx)
                        : dispatch_args(want, c, keep, want.inputs[me].topk_idx);
      ASSERT_TRUE(buffer->low_latency_dispatch(a, r.stream, nullptr).ok());
      e = buffer->synchronize(r.stream);
      EXPECT_FALSE(e.ok()) << "rank " << me << ": a hidden mismatch went unreported";
      r.ctx->host_barrier();
    }
    {
      auto buffer = make_buffer(r, ll_options(r, c, 5.0));
      ASSERT_TRUE(buffer);
      HostTensor bad_topk = want.inputs[me].topk_idx;  // one id past the last expert on rank 0
      if (me == 0 && bad_topk.dtype() == DType::kInt64)
        bad_topk.at<int64_t>({0, 0}) = int64_t{c.experts_per_rank} * R;
      if (me == 0 && bad_topk.dtype() == DType::kInt32)
        bad_topk.at<int32_t>({0, 0}) = c.experts_per_rank * R;
      LowLatencyDispatchArgs a = dispatch_args(want, c, keep, bad_topk);
      ASSERT_TRUE(buffer->low_latency_dispatch(a, r.stream, nullptr).ok());
      const Error e = buffer->synchronize(r.stream);
      if (me == 0) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
        EXPECT_NE(e.message().find("topk_idx: expected -1 or an expert id"), std::string::npos)
            << e.message();
      }
      r.ctx->host_barrier();
    }
    {
      // A combine whose topk_idx is not its dispatch's: rank 0's token 0 names, in its slot 0,
      // an expert of the last rank that the dispatch did not send it to. Rank 0 fails within
      // the timeout (it waits for a row or partial that never comes); with the pre-reduced
      // combine (the default at 2 ranks) the last rank reports the routing itself.
      auto buffer = make_buffer(r, ll_options(r, c, 3.0));
      ASSERT_TRUE(buffer);
      LowLatencyDispatchArgs a = dispatch_args(want, c, keep, want.inputs[me].topk_idx);
      ASSERT_TRUE(buffer->low_latency_dispatch(a, r.stream, nullptr).ok());
      ASSERT_TRUE(buffer->synchronize(r.stream).ok());
      HostTensor moved = want.inputs[me].topk_idx;
      const int64_t K = moved.size(1);
      auto get = [&](int64_t k) {
        return moved.dtype() == DType::kInt64 ? moved.at<int64_t>({0, k})
                                              : int64_t{moved.at<int32_t>({0, k})};
      };
      int64_t fresh = -1;  // an expert of the last rank that token 0 does not name
      for (int64_t e = int64_t{c.experts_per_rank} * (R - 1);
           fresh < 0 && e < int64_t{c.experts_per_rank} * R; ++e) {
        bool named = false;
        for (int64_t k = 0; k < K; ++k) named = named || get(k) == e;
        if (!named) fresh = e;
      }
      ASSERT_GE(fresh, 0);
      if (me == 0 && moved.dtype() == DType::kInt64) moved.at<int64_t>({0, 0}) = fresh;
      if (me == 0 && moved.dtype() == DType::kInt32)
        moved.at<int32_t>({0, 0}) = static_cast<int32_t>(fresh);
      DeviceTensor topk(moved, r.device), w(want.inputs[me].topk_weights, r.device);
      DeviceTensor out = DeviceTensor::poisoned(want.out[me], r.device);
      LowLatencyCombineArgs cb;
      cb.x = keep[2].view();  // identity experts: the received rows
      cb.topk_idx = topk.view();
      cb.topk_weights = w.view();
      cb.handle = a.handle;
      cb.out = out.view();
      ASSERT_TRUE(buffer->low_latency_combine(cb, r.stream, nullptr).ok());
      const Error e = buffer->synchronize(r.stream);
      if (me == 0)
        EXPECT_FALSE(e.ok()) << "rank 0: a combine routed unlike its dispatch went unreported";
      // The pre-reduced combine runs at 2 ranks unless EPCOMM_LL_PREREDUCE=0 turns it off.
      const char* prereduce = std::getenv("EPCOMM_LL_PREREDUCE");
      const bool prereduced = R == 2 && !(prereduce != nullptr && std::strcmp(prereduce, "0") == 0);
      if (prereduced && me == R - 1) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
        EXPECT_NE(e.message().find("topk_idx: expected the routing of the handle's dispatch"),
                  std::string::npos)
            << e.message();
      }
      r.ctx->host_barrier();
    }
  });
}

}  // namespace
}  // namespace epcomm::testing
