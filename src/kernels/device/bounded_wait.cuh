// The one bounded-wait helper every spin loop uses (architecture.md section 5).
// It polls `ready()` until it holds, the timeout passes, the host raises the abort flag, or
// another wait of the same Buffer already failed. On timeout or abort it records
// (op, rank, peer, stage) in the host-readable error record; the first failure wins the record,
// every failing peer is added to peer_mask.
#pragma once

#include <cstdint>

#include "core/error_record.h"
#include "kernels/device/ptx.cuh"
#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

__device__ __forceinline__ void record_wait_failure(const WaitContext& ctx, int32_t peer,
                                                    core::WaitStage stage, uint64_t waited_ns,
                                                    bool aborted) {
  atomicExch(ctx.failed, 1);  // the other waits of this GPU give up at their next check
  if (peer >= 0 && peer < 64)
    atomicOr(reinterpret_cast<unsigned long long*>(&ctx.error->peer_mask), 1ull << peer);
  if (atomicCAS(&ctx.error->status, core::kRecordEmpty, core::kRecordWriting) != core::kRecordEmpty)
    return;
  ctx.error->op = ctx.op;
  ctx.error->rank = ctx.rank;
  ctx.error->peer = peer;
  ctx.error->stage = static_cast<int32_t>(stage);
  ctx.error->reserved = aborted ? 1 : 0;
  ctx.error->waited_ns = waited_ns;
  // Orders the fields above before the status the host polls.
  __threadfence_system();
  atomicExch(&ctx.error->status, core::kRecordValid);
}

// Every ctx.flag_check_ns a waiting thread checks the timeout, this GPU's failure word and the
// host's abort flag. Only the abort flag crosses PCIe: reads of host-mapped memory by many
// waiting threads saturate the bus and stall the waits themselves (the 4-rank combine took 45 ms
// instead of 0.9 ms with the record read every 100 us: docs/perf.md, v4 and v9).
// Returns true when ready() held, false when the wait gave up (and the record was written).
// Call it from one lane per warp where the whole warp waits for the same thing. `peer` is read
// when the wait fails, so a ready() that waits for several ranks can name the one it is on.
template <class Ready>
__device__ __forceinline__ bool bounded_wait(const WaitContext& ctx, const int32_t& peer,
                                             core::WaitStage stage, Ready ready) {
  if (ready()) return true;
  const uint64_t start = global_timer_ns();
  uint64_t next_check = start + ctx.flag_check_ns;
  while (true) {
    for (int i = 0; i < 32; ++i)
      if (ready()) return true;
    const uint64_t now = global_timer_ns();
    if (now < next_check) continue;
    next_check = now + ctx.flag_check_ns;
    const uint64_t waited = now - start;
    const bool aborted = ld_relaxed_sys(&ctx.control->abort_flag) != 0;
    const bool other_failed = *reinterpret_cast<volatile const int32_t*>(ctx.failed) != 0;
    if (aborted || other_failed || waited > ctx.timeout_ns) {
      if (!other_failed || waited > ctx.timeout_ns)
        record_wait_failure(ctx, peer, stage, waited, aborted);
      return false;
    }
  }
}

}  // namespace epcomm::kernels
