#include "epcomm/size_hints.h"

#include "core/low_latency_layout.h"
#include "core/normal_layout.h"
#include "core/numeric.h"

namespace epcomm {

int64_t get_low_latency_buffer_size_hint(int32_t num_max_dispatch_tokens_per_rank, int32_t hidden,
                                         int32_t num_ranks, int32_t num_experts) {
  if (num_max_dispatch_tokens_per_rank <= 0 || hidden <= 0 || num_ranks <= 0 || num_experts <= 0 ||
      num_experts % num_ranks != 0)
    return 0;
  const auto layout = core::LowLatencyLayout::make(num_max_dispatch_tokens_per_rank, hidden,
                                                   num_ranks, num_experts);
  return core::align_up(layout.total_bytes(), core::kAllocationAlignment);
}

int64_t get_normal_buffer_size_hint(int64_t max_tokens_per_rank, int64_t hidden_bytes,
                                    int32_t num_ranks, int32_t topk) {
  if (max_tokens_per_rank < 0 || hidden_bytes <= 0 || hidden_bytes % 16 != 0 || num_ranks <= 0 ||
      topk < 0)
    return 0;
  const int64_t rows = max_tokens_per_rank * num_ranks;
  const int64_t scales =
      hidden_bytes / 2 / core::kFp8GroupSize;  // FP8 scales of a BF16-sized hidden
  const int64_t per_row =
      core::NormalArea::bytes_per_row(hidden_bytes, static_cast<int32_t>(scales), topk, true);
  const int64_t area = core::align_up(rows * per_row + 6 * 16, core::kRegionAlignment);
  return core::align_up(2 * area, core::kAllocationAlignment);
}

}  // namespace epcomm
