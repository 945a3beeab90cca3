// A launcher for one host: forks one process per rank and gives each an all-gather over shared
// memory (no MPI, no torch). Used by the GPU tests, the demo and the benchmark.
// The parent must not have initialised CUDA before run_ranks (the children own the GPUs).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "epcomm/buffer.h"

namespace epcomm::harness {

constexpr int kMaxHarnessRanks = 16;
constexpr int kSkipExitCode = 77;  // a rank returns this when the machine lacks what it needs

struct RankContext {
  int rank = 0;
  int num_ranks = 1;
  AllGatherFn all_gather;              // throws std::runtime_error on timeout, naming missing ranks
  std::function<void()> host_barrier;  // an all-gather of nothing
};

struct LaunchOptions {
  int num_ranks = 2;
  double all_gather_timeout_seconds = 60.0;
  double wall_timeout_seconds = 300.0;  // children still running then are killed
};

struct LaunchResult {
  std::vector<int> exit_codes;  // per rank; -signal when killed by a signal
  bool timed_out = false;
  bool ok() const;               // every rank exited 0
  bool skipped() const;          // every rank exited kSkipExitCode
  std::string describe() const;  // "rank 0: exit 0; rank 1: exit 1"
};

// Runs body(ctx) in num_ranks child processes; the body's return value is the exit code
// (an exception counts as exit code 2).
LaunchResult run_ranks(const LaunchOptions& options, const std::function<int(RankContext&)>& body);

// The CUDA device a rank should use: its rank when enough devices are visible, else
// rank % count when EPCOMM_TEST_OVERSUBSCRIBE=1 (several ranks share a GPU, functional tests
// only), else -1 (skip). Call inside a rank.
int device_for_rank(int rank, int num_ranks);

}  // namespace epcomm::harness
