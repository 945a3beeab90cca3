// The normal kernels' launch choices (kernels/normal_launch_policy.h): the measured table of
// docs/perf.md (v10c-v22) and the environment knobs that override it.
#include <gtest/gtest.h>

#include "kernels/normal_launch_policy.h"

namespace epcomm::kernels {
namespace {

constexpr int kWarps = 16;
constexpr int64_t kBf16Row = 7168 * 2;
constexpr int64_t kFp8Row = 7168;
constexpr int64_t kTokens = 4096;  // the standard setting's tokens per rank

void expect_dispatch(int32_t ranks, int sms, int64_t row, SenderSplit split, bool dynamic,
                     bool interleaved, int64_t tokens = kTokens) {
  SCOPED_TRACE(testing::Message() << ranks << " ranks, " << sms << " SMs, row " << row << ", "
                                  << tokens << " tokens");
  const DispatchPolicy p = dispatch_policy(ranks, sms, row, tokens, DispatchKnobs{}, kWarps);
  EXPECT_EQ(p.split.send_warps, split.send_warps);
  EXPECT_EQ(p.split.batch, split.batch);
  EXPECT_EQ(p.dynamic_senders, dynamic);
  EXPECT_EQ(p.recv_interleaved, interleaved);
}

TEST(LaunchPolicy, DispatchMeasuredTable) {
  // Three or more peers: counter-driven senders for BF16-sized rows at every SM count (v16).
  expect_dispatch(4, 24, kBf16Row, {5, 4}, true, true);
  // FP8 rows at 20-27 SMs: 5 senders with 8-token chunks from the counter from 128 tokens per
  // SM (v22), else the static 4 with 8.
  expect_dispatch(4, 24, kFp8Row, {5, 8}, true, true);
  expect_dispatch(4, 24, kFp8Row, {4, 8}, false, true, 2048);
  expect_dispatch(4, 32, kBf16Row, {6, 1}, true, true);
  expect_dispatch(4, 32, kFp8Row, {8, 4}, false, true);
  expect_dispatch(4, 12, kBf16Row, {8, 4}, true, true);
  expect_dispatch(3, 16, kFp8Row, {8, 4}, false, true);
  // One peer: receivers in slot order; counter-driven senders only from 20 SMs.
  expect_dispatch(2, 24, kBf16Row, {9, 4}, true, false);
  expect_dispatch(2, 12, kBf16Row, {11, 4}, false, false);
  expect_dispatch(2, 24, kFp8Row, {9, 4}, false, false);
  // 8 KB rows (hidden 4096 BF16) are not "BF16-sized": they follow the FP8 rows.
  expect_dispatch(4, 24, 8192, {5, 8}, true, true);
  expect_dispatch(4, 12, 8192, {8, 4}, false, true);
}

TEST(LaunchPolicy, DispatchFewTokensPerSm) {
  // Two or more peers, BF16-sized rows, below 28 SMs (v19): below 64 tokens per SM 8 senders
  // with 1 token per chunk, below 128 at most 2 per chunk.
  expect_dispatch(4, 24, kBf16Row, {8, 1}, true, true, 512);
  expect_dispatch(4, 24, kBf16Row, {8, 1}, true, true, 1024);
  expect_dispatch(4, 24, kBf16Row, {5, 2}, true, true, 2048);
  expect_dispatch(4, 24, kBf16Row, {5, 4}, true, true, 3072);
  expect_dispatch(4, 12, kBf16Row, {8, 1}, true, true, 512);
  expect_dispatch(4, 12, kBf16Row, {8, 2}, true, true, 1024);
  expect_dispatch(4, 12, kBf16Row, {8, 4}, true, true, 2048);
  expect_dispatch(3, 16, kBf16Row, {8, 1}, true, true, 0);  // a rank with no tokens
  // One peer at 20+ SMs, BF16-sized rows: below 64 tokens per SM 12 senders with 1 per chunk.
  expect_dispatch(2, 24, kBf16Row, {12, 1}, true, false, 512);
  expect_dispatch(2, 24, kBf16Row, {12, 1}, true, false, 1024);
  expect_dispatch(2, 24, kBf16Row, {9, 4}, true, false, 2048);
  // Unchanged: FP8 rows, one peer below 20 SMs, 28 SMs or more.
  expect_dispatch(4, 24, kFp8Row, {4, 8}, false, true, 512);
  expect_dispatch(2, 12, kBf16Row, {11, 4}, false, false, 512);
  expect_dispatch(4, 32, kBf16Row, {6, 1}, true, true, 512);
  // The environment's knobs still win.
  DispatchKnobs k;
  k.send_warps = 5;
  k.token_batch = 4;
  const DispatchPolicy p = dispatch_policy(4, 24, kBf16Row, 512, k, kWarps);
  EXPECT_EQ(p.split.send_warps, 5);
  EXPECT_EQ(p.split.batch, 4);
}

TEST(LaunchPolicy, DispatchKnobsOverrideTheTable) {
  DispatchKnobs k;
  k.dynamic = Force::kOff;
  k.recv_interleaved = Force::kOff;
  k.send_warps = 3;
  k.token_batch = 2;
  DispatchPolicy p = dispatch_policy(4, 24, kBf16Row, kTokens, k, kWarps);
  EXPECT_FALSE(p.dynamic_senders);
  EXPECT_FALSE(p.recv_interleaved);
  EXPECT_EQ(p.split.send_warps, 3);
  EXPECT_EQ(p.split.batch, 2);
  // A sender count that leaves no receiver warp is ignored.
  k = DispatchKnobs{};
  k.send_warps = kWarps;
  k.dynamic = Force::kOn;
  k.recv_interleaved = Force::kOn;
  p = dispatch_policy(2, 12, kFp8Row, kTokens, k, kWarps);
  EXPECT_EQ(p.split.send_warps, 11);
  EXPECT_TRUE(p.dynamic_senders);
  EXPECT_TRUE(p.recv_interleaved);
}

TEST(LaunchPolicy, CombineMeasuredTableAndKnobs) {
  CombinePolicy p = combine_policy(4, 24, CombineKnobs{}, kWarps);
  EXPECT_FALSE(p.join_reduce);
  EXPECT_TRUE(p.prefetch_next);
  EXPECT_TRUE(p.staged_sends);
  EXPECT_EQ(p.split.send_warps, 5);  // staged (v21): 5 senders at 20+ SMs
  EXPECT_EQ(p.split.batch, 3);
  // Three or more peers below 20 SMs: staged, 6 senders that join the reduce (v16, v21).
  p = combine_policy(3, 12, CombineKnobs{}, kWarps);
  EXPECT_TRUE(p.staged_sends);
  EXPECT_EQ(p.split.send_warps, 6);
  EXPECT_EQ(p.split.batch, 3);
  EXPECT_TRUE(p.join_reduce);
  // Where the stages do not fit, the register path's split: 6 senders at 20+ SMs, 8 joining
  // the reduce below.
  p = combine_policy(4, 24, CombineKnobs{}, kWarps, /*staged_possible=*/false);
  EXPECT_FALSE(p.staged_sends);
  EXPECT_EQ(p.split.send_warps, 6);
  EXPECT_FALSE(p.join_reduce);
  p = combine_policy(4, 12, CombineKnobs{}, kWarps, /*staged_possible=*/false);
  EXPECT_FALSE(p.staged_sends);
  EXPECT_EQ(p.split.send_warps, 8);
  EXPECT_TRUE(p.join_reduce);
  // One peer: the register path, 6 senders, no join, at any SM count.
  p = combine_policy(2, 12, CombineKnobs{}, kWarps);
  EXPECT_FALSE(p.staged_sends);
  EXPECT_EQ(p.split.send_warps, 6);
  EXPECT_FALSE(p.join_reduce);
  CombineKnobs k;
  k.join = Force::kOff;
  k.prefetch_off = true;
  k.row_batch = 1;
  p = combine_policy(4, 8, k, kWarps);
  EXPECT_FALSE(p.join_reduce);
  EXPECT_FALSE(p.prefetch_next);
  EXPECT_EQ(p.split.batch, 1);
  k = CombineKnobs{};
  k.join = Force::kOn;
  EXPECT_TRUE(combine_policy(2, 24, k, kWarps).join_reduce);
  k = CombineKnobs{};
  k.staged = Force::kOn;
  EXPECT_TRUE(combine_policy(2, 24, k, kWarps).staged_sends);
  k.staged = Force::kOff;
  p = combine_policy(4, 24, k, kWarps);
  EXPECT_FALSE(p.staged_sends);
  EXPECT_EQ(p.split.send_warps, 6);
}

TEST(LaunchPolicy, CombineCopyEnginesWithOnePeerAndAHostMatrix) {
  const CombineKnobs none{};
  CombineCopyPolicy c = combine_copy_policy(2, 24, true, true, none);
  EXPECT_EQ(c.chunks, 4);
  EXPECT_EQ(combine_copy_policy(2, 12, true, true, none).chunks, 16);
  EXPECT_EQ(combine_copy_policy(4, 24, true, true, none).chunks, 0);   // three peers: SM stores
  EXPECT_EQ(combine_copy_policy(2, 24, false, true, none).chunks, 0);  // no host matrix
  EXPECT_EQ(combine_copy_policy(2, 24, true, false, none).chunks, 0);  // strided weights
  CombineKnobs k;
  k.copy = Force::kOn;
  k.copy_chunks = 8;
  c = combine_copy_policy(4, 24, true, true, k);
  EXPECT_EQ(c.chunks, 8);
  k.copy = Force::kOff;
  EXPECT_EQ(combine_copy_policy(2, 24, true, true, k).chunks, 0);
}

}  // namespace
}  // namespace epcomm::kernels
