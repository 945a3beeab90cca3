// The one-host launcher used by the GPU tests, demo and benchmark: fork + shared-memory
// all-gather. Needs no GPU.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "harness/launcher.h"

namespace epcomm::harness {
namespace {

TEST(Harness, AllGatherDeliversEveryRanksBytesInRankOrder) {
  LaunchOptions o;
  o.num_ranks = 5;
  const auto result = run_ranks(o, [](RankContext& ctx) {
    for (int round = 0; round < 20; ++round) {  // many rounds: exercises the double-buffered slots
      const int64_t mine[2] = {ctx.rank, round * 100 + ctx.rank};
      std::vector<int64_t> all(2 * ctx.num_ranks);
      ctx.all_gather(mine, all.data(), sizeof(mine));
      for (int r = 0; r < ctx.num_ranks; ++r)
        if (all[2 * r] != r || all[2 * r + 1] != round * 100 + r) return 1;
    }
    return 0;
  });
  EXPECT_TRUE(result.ok()) << result.describe();
}

TEST(Harness, MissingRankTimesOutNamingIt) {
  LaunchOptions o;
  o.num_ranks = 3;
  o.all_gather_timeout_seconds = 0.5;
  const auto result = run_ranks(o, [](RankContext& ctx) {
    if (ctx.rank == 2) return 0;  // never joins
    char mine = 1;
    std::vector<char> all(ctx.num_ranks);
    try {
      ctx.all_gather(&mine, all.data(), 1);
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      return msg.find("waiting for ranks 2") != std::string::npos ? 0 : 10;
    }
    return 11;  // should have timed out
  });
  EXPECT_TRUE(result.ok()) << result.describe();
}

TEST(Harness, ExitCodesAndSkipsAreReportedPerRank) {
  LaunchOptions o;
  o.num_ranks = 2;
  auto result = run_ranks(o, [](RankContext& ctx) { return ctx.rank == 1 ? 3 : 0; });
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.exit_codes, (std::vector<int>{0, 3}));
  EXPECT_EQ(result.describe(), "rank 0: exit 0; rank 1: exit 3");
  result = run_ranks(o, [](RankContext&) { return kSkipExitCode; });
  EXPECT_TRUE(result.skipped());
  result = run_ranks(o, [](RankContext& ctx) -> int {
    if (ctx.rank == 0) throw std::runtime_error("boom");
    return 0;
  });
  EXPECT_EQ(result.exit_codes[0], 2) << "an exception counts as exit code 2";
}

TEST(Harness, HungRankIsKilledAtTheWallClockLimit) {
  LaunchOptions o;
  o.num_ranks = 2;
  o.wall_timeout_seconds = 1.0;
  const auto result = run_ranks(o, [](RankContext& ctx) {
    if (ctx.rank == 1) pause();  // hangs
    return 0;
  });
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.exit_codes[0], 0);
  EXPECT_EQ(result.exit_codes[1], -SIGKILL);
  EXPECT_NE(result.describe().find("wall-clock limit"), std::string::npos);
}

TEST(Harness, TooLargeAllGatherIsRefusedWithTheSizes) {
  LaunchOptions o;
  o.num_ranks = 1;
  const auto result = run_ranks(o, [](RankContext& ctx) {
    std::vector<char> big(1 << 20), all(1 << 20);
    try {
      ctx.all_gather(big.data(), all.data(), big.size());
    } catch (const std::exception& e) {
      return std::string(e.what()).find("exceed the slot") != std::string::npos ? 0 : 10;
    }
    return 11;
  });
  EXPECT_TRUE(result.ok()) << result.describe();
}

}  // namespace
}  // namespace epcomm::harness
