#include "epcomm/size_hints.h"

#include "core/low_latency_layout.h"

namespace epcomm {

int64_t get_low_latency_buffer_size_hint(int32_t num_max_dispatch_tokens_per_rank, int32_t hidden,
                                         int32_t num_ranks, int32_t num_experts) {
  if (num_max_dispatch_tokens_per_rank <= 0 || hidden <= 0 || num_ranks <= 0 ||
      num_experts <= 0 || num_experts % num_ranks != 0)
    return 0;
  const auto layout = core::LowLatencyLayout::make(num_max_dispatch_tokens_per_rank, hidden,
                                                   num_ranks, num_experts);
  return core::align_up(layout.total_bytes(), core::kAllocationAlignment);
}

}  // namespace epcomm
