// Running a GPU test body on R ranks (one process each) from a gtest test.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "epcomm/epcomm.hpp"
#include "harness/launcher.h"

namespace epcomm::testing {

// World size of this ctest entry (EPCOMM_TEST_RANKS, default 2).
inline int test_num_ranks() {
  const char* v = std::getenv("EPCOMM_TEST_RANKS");
  return v ? std::atoi(v) : 2;
}

// What a rank body gets: the harness context, its device, a stream.
struct GpuRank {
  harness::RankContext* ctx;
  int device;
  cudaStream_t stream;
};

// Runs body on every rank; skips the test when the machine has too few GPUs.
inline void run_world(const std::function<void(GpuRank&)>& body, int num_ranks = test_num_ranks(),
                      double wall_seconds = 120) {
  harness::LaunchOptions opts;
  opts.num_ranks = num_ranks;
  opts.wall_timeout_seconds = wall_seconds;
  opts.all_gather_timeout_seconds = 60;
  const auto result = harness::run_ranks(opts, [&](harness::RankContext& ctx) {
    const int device = harness::device_for_rank(ctx.rank, ctx.num_ranks);
    if (device < 0) return harness::kSkipExitCode;
    if (cudaSetDevice(device) != cudaSuccess) return 3;
    GpuRank r{&ctx, device, nullptr};
    if (cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking) != cudaSuccess) return 3;
    body(r);
    cudaStreamDestroy(r.stream);
    return ::testing::Test::HasFailure() ? 1 : 0;
  });
  if (result.skipped())
    GTEST_SKIP() << "fewer than " << num_ranks
                 << " GPUs (set EPCOMM_TEST_OVERSUBSCRIBE=1 to share GPUs)";
  EXPECT_TRUE(result.ok()) << result.describe();
}

inline BufferOptions test_options(const GpuRank& r, double timeout_seconds = 5.0) {
  BufferOptions o;
  o.rank = r.ctx->rank;
  o.num_ranks = r.ctx->num_ranks;
  o.device = r.device;
  o.num_nvl_bytes = int64_t{8} << 20;
  o.num_rdma_bytes = int64_t{4} << 20;
  o.timeout_seconds = timeout_seconds;
  return o;
}

inline std::unique_ptr<Buffer> make_buffer(const GpuRank& r, const BufferOptions& o) {
  std::unique_ptr<Buffer> buffer;
  const Error e = Buffer::create(o, r.ctx->all_gather, &buffer);
  EXPECT_TRUE(e.ok()) << "rank " << r.ctx->rank << ": " << e.to_string();
  return buffer;
}

}  // namespace epcomm::testing
