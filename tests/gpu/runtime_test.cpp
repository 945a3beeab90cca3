// GPU runtime on R ranks (one process per GPU): create, connect, barrier, peer writes, timeouts,
// configuration checks, validation before launch. Run with EPCOMM_TEST_RANKS = 2, 3, 4.
#include <chrono>
#include <cstring>
#include <thread>

#include "epcomm/epcomm.h"
#include "pattern_kernels.h"
#include "world.h"

namespace epcomm::testing {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(GpuRuntime, CreateConnectAndBarrier) {
  run_world([](GpuRank& r) {
    auto buffer = make_buffer(r, test_options(r));
    ASSERT_TRUE(buffer);
    EXPECT_EQ(buffer->topology().rank, r.ctx->rank);
    EXPECT_EQ(buffer->topology().num_ranks, r.ctx->num_ranks);
    EXPECT_TRUE(buffer->topology().single_node());
    EXPECT_EQ(buffer->device(), r.device);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(buffer->barrier(r.stream).ok());
    const Error e = buffer->synchronize(r.stream);
    EXPECT_TRUE(e.ok()) << e.to_string();
    r.ctx->host_barrier();  // nobody frees memory a peer may still touch
    EXPECT_TRUE(buffer->destroy().ok());
    EXPECT_EQ(buffer->barrier(r.stream).code(), ErrorCode::kFailedState);
  });
}

uint32_t seed_for(int src, int dst, int round, bool ll) {
  return static_cast<uint32_t>(src * 1315423911u + dst * 2654435761u + round * 97u +
                               (ll ? 7u : 1u));
}

TEST(GpuRuntime, EveryRankWritesEveryPeerAndReadsWhatArrived) {
  run_world([](GpuRank& r) {
    auto buffer = make_buffer(r, test_options(r));
    ASSERT_TRUE(buffer);
    const int R = r.ctx->num_ranks, me = r.ctx->rank;
    unsigned long long* bad = nullptr;
    ASSERT_EQ(cudaMalloc(&bad, sizeof(*bad)), cudaSuccess);
    for (int round = 0; round < 3; ++round) {
      for (bool ll : {false, true}) {
        const int64_t region =
            ll ? buffer->options().num_rdma_bytes : buffer->options().num_nvl_bytes;
        const int64_t chunk_words = region / R / 16 * 4;  // 16-byte multiple per source
        // Write my chunk into every peer's region (and my own).
        for (int d = 0; d < R; ++d) {
          auto* dst = static_cast<uint32_t*>(buffer->peer_region(d, ll)) + me * chunk_words;
          ASSERT_EQ(write_pattern(dst, chunk_words, seed_for(me, d, round, ll), r.stream),
                    cudaSuccess);
        }
        ASSERT_TRUE(buffer->barrier(r.stream).ok());
        ASSERT_EQ(cudaMemsetAsync(bad, 0, sizeof(*bad), r.stream), cudaSuccess);
        for (int s = 0; s < R; ++s) {
          const auto* src =
              static_cast<const uint32_t*>(buffer->local_region(ll)) + s * chunk_words;
          ASSERT_EQ(count_mismatches(src, chunk_words, seed_for(s, me, round, ll), bad, r.stream),
                    cudaSuccess);
        }
        // Nobody overwrites a region before every rank has checked it.
        ASSERT_TRUE(buffer->barrier(r.stream).ok());
        unsigned long long host_bad = 1;
        ASSERT_EQ(
            cudaMemcpyAsync(&host_bad, bad, sizeof(host_bad), cudaMemcpyDeviceToHost, r.stream),
            cudaSuccess);
        const Error e = buffer->synchronize(r.stream);
        ASSERT_TRUE(e.ok()) << e.to_string();
        EXPECT_EQ(host_bad, 0u) << "rank " << me << " round " << round << (ll ? " rdma" : " nvl")
                                << " region: words differing from what the peers wrote";
      }
    }
    cudaFree(bad);
    r.ctx->host_barrier();
  });
}

TEST(GpuRuntime, MissingRankMakesTheBarrierFailNamingItWithinTwiceTheTimeout) {
  run_world([](GpuRank& r) {
    const double timeout = 2.0;
    auto buffer = make_buffer(r, test_options(r, timeout));
    ASSERT_TRUE(buffer);
    const int missing = r.ctx->num_ranks - 1;
    if (r.ctx->rank != missing) {
      const auto start = Clock::now();
      ASSERT_TRUE(buffer->barrier(r.stream).ok());
      const Error e = buffer->synchronize(r.stream);
      const double took = seconds_since(start);
      EXPECT_EQ(e.code(), ErrorCode::kTimeout) << e.to_string();
      EXPECT_NE(e.message().find("waiting for rank " + std::to_string(missing)), std::string::npos)
          << e.message();
      EXPECT_NE(e.message().find("barrier on rank " + std::to_string(r.ctx->rank)),
                std::string::npos)
          << e.message();
      EXPECT_LT(took, 2 * timeout) << e.message();
      EXPECT_GE(took, timeout * 0.9);
      std::printf("[rank %d] timeout error after %.2f s (timeout %.1f s): %s\n", r.ctx->rank, took,
                  timeout, e.to_string().c_str());
      // The Buffer is failed; the CUDA context is not (no trap, no sticky error).
      EXPECT_EQ(buffer->barrier(r.stream).code(), ErrorCode::kFailedState);
      EXPECT_EQ(cudaGetLastError(), cudaSuccess);
      void* probe = nullptr;
      EXPECT_EQ(cudaMalloc(&probe, 1024), cudaSuccess);
      EXPECT_EQ(cudaMemset(probe, 0, 1024), cudaSuccess);
      EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      cudaFree(probe);
    }
    r.ctx->host_barrier();  // the missing rank keeps its buffer mapped until the others are done
    EXPECT_TRUE(buffer->destroy().ok());
  });
}

TEST(GpuRuntime, HostAbortStopsAWaitEarly) {
  run_world([](GpuRank& r) {
    auto buffer = make_buffer(r, test_options(r, 60.0));
    ASSERT_TRUE(buffer);
    if (r.ctx->rank == 0) {
      const auto start = Clock::now();
      ASSERT_TRUE(buffer->barrier(r.stream).ok());
      std::thread aborter([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        buffer->abort();
      });
      const Error e = buffer->synchronize(r.stream);
      aborter.join();
      EXPECT_LT(seconds_since(start), 10.0);
      EXPECT_NE(e.message().find("aborted"), std::string::npos) << e.to_string();
    }
    r.ctx->host_barrier();
  });
}

TEST(GpuRuntime, DifferentConfigurationOnOneRankIsReportedByEveryRank) {
  run_world([](GpuRank& r) {
    BufferOptions o = test_options(r);
    if (r.ctx->rank == 1) o.num_nvl_bytes += 4096;
    std::unique_ptr<Buffer> buffer;
    const Error e = Buffer::create(o, r.ctx->all_gather, &buffer);
    EXPECT_FALSE(e.ok());
    EXPECT_FALSE(buffer);
    EXPECT_NE(e.message().find("num_nvl_bytes"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("on rank 1"), std::string::npos) << e.message();
    // Nothing leaked: a correct Buffer can be created right after.
    auto ok = make_buffer(r, test_options(r));
    EXPECT_TRUE(ok);
    r.ctx->host_barrier();
  });
}

TEST(GpuRuntime, OperationsValidateBeforeLaunchAndCheckBufferSize) {
  run_world([](GpuRank& r) {
    auto buffer = make_buffer(r, test_options(r));
    ASSERT_TRUE(buffer);
    const int R = r.ctx->num_ranks;
    void* mem = nullptr;
    ASSERT_EQ(cudaMalloc(&mem, 1 << 20), cudaSuccess);
    auto* base = static_cast<uint8_t*>(mem);
    LayoutArgs la;
    la.topk_idx =
        TensorView::contiguous(base, DType::kFloat32, {16, 4}, DeviceKind::kCuda, r.device);
    la.num_experts = 8 * R;
    la.num_tokens_per_rank = TensorView::contiguous(base + 4096, DType::kInt32, {R});
    la.num_tokens_per_expert = TensorView::contiguous(base + 8192, DType::kInt32, {8 * R});
    la.is_token_in_rank = TensorView::contiguous(base + 16384, DType::kBool, {16, R});
    Error e = buffer->get_dispatch_layout(la, r.stream);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(e.message().find("topk_idx: expected dtype int64 or int32, got float32"),
              std::string::npos)
        << e.message();
    la.num_experts = 8 * R + 1;
    la.topk_idx.dtype = DType::kInt64;
    e = buffer->get_dispatch_layout(la, r.stream);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.to_string();
    EXPECT_NE(e.message().find("num_experts"), std::string::npos) << e.message();
    // Low-latency op on a buffer whose rdma region is too small: both sizes in the message.
    e = buffer->clean_low_latency_buffer(128, 7168, 8 * R, r.stream);
    EXPECT_EQ(e.code(), ErrorCode::kBufferTooSmall) << e.to_string();
    EXPECT_NE(e.message().find("expected at least"), std::string::npos);
    EXPECT_NE(e.message().find("got 4194304"), std::string::npos) << e.message();
    cudaFree(mem);
    r.ctx->host_barrier();
  });
}

struct CGather {
  harness::RankContext* ctx;
};

int c_all_gather(const void* mine, void* all, size_t bytes, void* user) {
  try {
    static_cast<CGather*>(user)->ctx->all_gather(mine, all, bytes);
    return 0;
  } catch (...) {
    return 1;
  }
}

epcomm_tensor_t c_view(void* data, int32_t dtype, std::initializer_list<int64_t> shape,
                       int device) {
  epcomm_tensor_t t;
  epcomm_tensor_init(&t);
  t.data = data;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape.begin()[d];
    t.strides[d] = stride;
    stride *= t.shape[d];
  }
  t.device_kind = 1;
  t.device_index = device;
  return t;
}

// The args' stream handoffs (epcomm_layout_args_t::handoffs): the layout reads topk_idx written
// on `up` after a 50 ms host function, and a copy on `down` reads its counts. With
// legacy_upstream, `up` is the legacy default stream (handle NULL, a stream like any other).
void check_layout_handoffs(GpuRank& r, epcomm_buffer_t b, bool legacy_upstream) {
  const int R = r.ctx->num_ranks, T = 4, K = 2, E = 2 * R;
  cudaStream_t up = nullptr, down = nullptr;
  if (!legacy_upstream)
    ASSERT_EQ(cudaStreamCreateWithFlags(&up, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&down, cudaStreamNonBlocking), cudaSuccess);
  int64_t *topk = nullptr, *topk_host = nullptr;
  int32_t *per_rank = nullptr, *per_expert = nullptr, *seen = nullptr;
  bool* in_rank = nullptr;
  ASSERT_EQ(cudaMalloc(&topk, T * K * 8), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&per_rank, R * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&per_expert, E * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&in_rank, T * R), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&topk_host, T * K * 8), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&seen, E * 4), cudaSuccess);
  ASSERT_EQ(cudaMemset(topk, 0xFF, T * K * 8), cudaSuccess);  // -1: no expert, counts 0
  ASSERT_EQ(cudaMemset(per_expert, 0xA5, E * 4), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (int t = 0; t < T; ++t) topk_host[t * K] = 0, topk_host[t * K + 1] = E - 1;
  ASSERT_EQ(
      cudaLaunchHostFunc(
          up, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(50)); }, nullptr),
      cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(topk, topk_host, T * K * 8, cudaMemcpyHostToDevice, up), cudaSuccess);
  epcomm_layout_args_t a;
  epcomm_layout_args_init(&a);
  a.topk_idx = c_view(topk, EPCOMM_DTYPE_INT64, {T, K}, r.device);
  a.num_experts = E;
  a.num_tokens_per_rank = c_view(per_rank, EPCOMM_DTYPE_INT32, {R}, r.device);
  a.num_tokens_per_expert = c_view(per_expert, EPCOMM_DTYPE_INT32, {E}, r.device);
  a.is_token_in_rank = c_view(in_rank, EPCOMM_DTYPE_BOOL, {T, R}, r.device);
  a.upstream = up;
  a.downstream = down;
  a.handoffs = 4;  // not a handoff: refused before anything is enqueued
  EXPECT_EQ(epcomm_get_dispatch_layout(b, &a, r.stream), EPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(epcomm_last_error_message(), "args->handoffs"), nullptr)
      << epcomm_last_error_message();
  a.handoffs = EPCOMM_HANDOFF_UPSTREAM | EPCOMM_HANDOFF_DOWNSTREAM;
  EXPECT_EQ(epcomm_get_dispatch_layout(b, &a, r.stream), EPCOMM_SUCCESS)
      << epcomm_last_error_message();
  ASSERT_EQ(cudaMemcpyAsync(seen, per_expert, E * 4, cudaMemcpyDeviceToHost, down), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(down), cudaSuccess);
  for (int e = 0; e < E; ++e) EXPECT_EQ(seen[e], e == 0 || e == E - 1 ? T : 0) << "expert " << e;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (void* p : {static_cast<void*>(topk), static_cast<void*>(per_rank),
                  static_cast<void*>(per_expert), static_cast<void*>(in_rank)})
    cudaFree(p);
  cudaFreeHost(topk_host);
  cudaFreeHost(seen);
  if (up != nullptr) cudaStreamDestroy(up);
  cudaStreamDestroy(down);
}

TEST(GpuRuntime, CAbiCreateBarrierSynchronizeDestroy) {
  run_world([](GpuRank& r) {
    epcomm_buffer_options_t o;
    epcomm_buffer_options_init(&o);
    o.rank = r.ctx->rank;
    o.num_ranks = r.ctx->num_ranks;
    o.device = r.device;
    o.num_nvl_bytes = 1 << 20;
    o.timeout_seconds = 5;
    CGather g{r.ctx};
    epcomm_buffer_t b = nullptr;
    ASSERT_EQ(epcomm_buffer_create(&o, c_all_gather, &g, &b), EPCOMM_SUCCESS)
        << epcomm_last_error_message();
    for (int i = 0; i < 10; ++i) ASSERT_EQ(epcomm_buffer_barrier(b, r.stream), EPCOMM_SUCCESS);
    EXPECT_EQ(epcomm_buffer_synchronize(b, r.stream), EPCOMM_SUCCESS)
        << epcomm_last_error_message();
    // stream_wait orders a second stream after this one: the flag written after a 50 ms host
    // function on r.stream is what the other stream reads.
    cudaStream_t other = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), cudaSuccess);
    int32_t* flag = nullptr;
    int32_t* seen = nullptr;
    ASSERT_EQ(cudaMalloc(&flag, 4), cudaSuccess);
    ASSERT_EQ(cudaMallocHost(&seen, 4), cudaSuccess);
    *seen = 0;
    ASSERT_EQ(cudaMemset(flag, 0, 4), cudaSuccess);
    ASSERT_EQ(
        cudaLaunchHostFunc(
            r.stream, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(50)); },
            nullptr),
        cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(flag, 7, 1, r.stream), cudaSuccess);
    EXPECT_EQ(epcomm_buffer_stream_wait(b, other, r.stream), EPCOMM_SUCCESS)
        << epcomm_last_error_message();
    ASSERT_EQ(cudaMemcpyAsync(seen, flag, 4, cudaMemcpyDeviceToHost, other), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(other), cudaSuccess);
    EXPECT_EQ(*seen, 7);
    cudaFree(flag);
    cudaFreeHost(seen);
    cudaStreamDestroy(other);
    check_layout_handoffs(r, b, false);
    check_layout_handoffs(r, b, true);
    void* region = nullptr;
    EXPECT_EQ(epcomm_buffer_local_region(b, 0, &region), EPCOMM_SUCCESS);
    EXPECT_NE(region, nullptr);
    r.ctx->host_barrier();
    EXPECT_EQ(epcomm_buffer_destroy(b), EPCOMM_SUCCESS);
  });
}

}  // namespace
}  // namespace epcomm::testing
