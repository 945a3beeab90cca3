// Recording input errors that only the GPU can see (values in device memory) in the same
// host-readable record as wait failures. The first error wins; the kernel then skips its work.
#pragma once

#include "core/error_record.h"
#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

__device__ __forceinline__ void record_input_error(const WaitContext& ctx, core::WaitStage stage,
                                                   int32_t peer, int64_t value, int64_t limit) {
  atomicExch(ctx.failed, 1);  // this GPU's waits give up at their next check
  if (atomicCAS(&ctx.error->status, core::kRecordEmpty, core::kRecordWriting) != core::kRecordEmpty)
    return;
  ctx.error->op = ctx.op;
  ctx.error->rank = ctx.rank;
  ctx.error->peer = peer;
  ctx.error->stage = static_cast<int32_t>(stage);
  ctx.error->value = value;
  ctx.error->limit = limit;
  // Orders the fields above before the status the host polls.
  __threadfence_system();
  atomicExch(&ctx.error->status, core::kRecordValid);
}

}  // namespace epcomm::kernels
