// The normal kernels' launch choices (kernels/normal_launch_policy.h): the measured table of
// docs/perf.md (v10c-v18) and the environment knobs that override it.
#include <gtest/gtest.h>

#include "kernels/normal_launch_policy.h"

namespace epcomm::kernels {
namespace {

constexpr int kWarps = 16;
constexpr int64_t kBf16Row = 7168 * 2;
constexpr int64_t kFp8Row = 7168;

void expect_dispatch(int32_t ranks, int sms, int64_t row, SenderSplit split, bool dynamic,
                     bool interleaved) {
  SCOPED_TRACE(testing::Message() << ranks << " ranks, " << sms << " SMs, row " << row);
  const DispatchPolicy p = dispatch_policy(ranks, sms, row, DispatchKnobs{}, kWarps);
  EXPECT_EQ(p.split.send_warps, split.send_warps);
  EXPECT_EQ(p.split.batch, split.batch);
  EXPECT_EQ(p.dynamic_senders, dynamic);
  EXPECT_EQ(p.recv_interleaved, interleaved);
  EXPECT_FALSE(p.wide_sends);
}

TEST(LaunchPolicy, DispatchMeasuredTable) {
  // Three or more peers: counter-driven senders for BF16-sized rows at every SM count (v16).
  expect_dispatch(4, 24, kBf16Row, {5, 4}, true, true);
  expect_dispatch(4, 24, kFp8Row, {4, 8}, false, true);
  expect_dispatch(4, 32, kBf16Row, {6, 1}, true, true);
  expect_dispatch(4, 32, kFp8Row, {8, 4}, false, true);
  expect_dispatch(4, 12, kBf16Row, {8, 4}, true, true);
  expect_dispatch(3, 16, kFp8Row, {8, 4}, false, true);
  // One peer: receivers in slot order; counter-driven senders only from 20 SMs.
  expect_dispatch(2, 24, kBf16Row, {9, 4}, true, false);
  expect_dispatch(2, 12, kBf16Row, {11, 4}, false, false);
  expect_dispatch(2, 24, kFp8Row, {9, 4}, false, false);
  // 8 KB rows (hidden 4096 BF16) are not "BF16-sized": every n-th token.
  expect_dispatch(4, 24, 8192, {4, 8}, false, true);
}

TEST(LaunchPolicy, DispatchKnobsOverrideTheTable) {
  DispatchKnobs k;
  k.dynamic = Force::kOff;
  k.recv_interleaved = Force::kOff;
  k.send_warps = 3;
  k.token_batch = 2;
  DispatchPolicy p = dispatch_policy(4, 24, kBf16Row, k, kWarps);
  EXPECT_FALSE(p.dynamic_senders);
  EXPECT_FALSE(p.recv_interleaved);
  EXPECT_EQ(p.split.send_warps, 3);
  EXPECT_EQ(p.split.batch, 2);
  // A sender count that leaves no receiver warp is ignored.
  k = DispatchKnobs{};
  k.send_warps = kWarps;
  k.dynamic = Force::kOn;
  k.recv_interleaved = Force::kOn;
  p = dispatch_policy(2, 12, kFp8Row, k, kWarps);
  EXPECT_EQ(p.split.send_warps, 11);
  EXPECT_TRUE(p.dynamic_senders);
  EXPECT_TRUE(p.recv_interleaved);
  // The wide senders exist only in the static-order instantiation.
  k = DispatchKnobs{};
  k.wide_sends = true;
  EXPECT_TRUE(dispatch_policy(4, 24, kFp8Row, k, kWarps).wide_sends);
  EXPECT_FALSE(dispatch_policy(4, 24, kBf16Row, k, kWarps).wide_sends);
}

TEST(LaunchPolicy, CombineMeasuredTableAndKnobs) {
  CombinePolicy p = combine_policy(4, 24, CombineKnobs{}, kWarps);
  EXPECT_EQ(p.split.send_warps, 6);
  EXPECT_EQ(p.split.batch, 3);
  EXPECT_FALSE(p.join_reduce);
  EXPECT_TRUE(p.prefetch_next);
  // Three or more peers below 20 SMs: 8 senders that join the reduce (v16).
  p = combine_policy(3, 12, CombineKnobs{}, kWarps);
  EXPECT_EQ(p.split.send_warps, 8);
  EXPECT_EQ(p.split.batch, 3);
  EXPECT_TRUE(p.join_reduce);
  // One peer: 6 senders, no join, at any SM count.
  p = combine_policy(2, 12, CombineKnobs{}, kWarps);
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
}

}  // namespace
}  // namespace epcomm::kernels
