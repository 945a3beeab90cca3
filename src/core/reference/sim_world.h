// SimWorld: the CPU reference of every operation (semantics.md sections 1-5) over a simulated
// world of R ranks in one process. It takes the same argument structs as Buffer, with host
// tensors (DeviceKind::kCpu), and runs the same validation, so the kernels and the reference
// share one contract. Collective operations take one argument struct per rank, indexed by rank.
// Errors name the rank whose arguments are wrong.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epcomm/dispatch.h"
#include "epcomm/error.h"
#include "epcomm/layout.h"
#include "epcomm/low_latency.h"
#include "epcomm/topology.h"

namespace epcomm::reference {

class SimWorld {
 public:
  explicit SimWorld(int32_t num_ranks) : num_ranks_(num_ranks) {}

  int32_t num_ranks() const { return num_ranks_; }
  Topology topology(int32_t rank) const { return Topology{rank, num_ranks_, num_ranks_}; }

  // Section 1 (local to `rank`).
  Error get_dispatch_layout(int32_t rank, const LayoutArgs& args) const;
  // Section 2, count exchange: fills each rank's handle (rank_prefix_matrix, send_slot,
  // is_token_in_rank) and counts.
  Error dispatch_notify(std::span<const DispatchNotifyArgs> args,
                        std::vector<DispatchCounts>* counts) const;
  // Section 2. Without num_worst_tokens the outputs must have the row count notify returned.
  Error dispatch(std::span<const DispatchArgs> args) const;
  // Section 3.
  Error combine(std::span<const CombineArgs> args) const;
  // Section 4: rows of a local expert are ordered by source rank, then source token.
  // dispatch_wait_recv_cost_stats gains 0 ns (nothing waits in a simulation).
  Error low_latency_dispatch(std::span<const LowLatencyDispatchArgs> args) const;
  // Section 5 (x is always read from args.x; zero_copy has no buffer to read here).
  Error low_latency_combine(std::span<const LowLatencyCombineArgs> args) const;

 private:
  Error check_rank_count(const char* op, size_t given) const;
  int32_t num_ranks_;
};

}  // namespace epcomm::reference
