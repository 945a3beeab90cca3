// Config size hints and default Configs.
#include "epcomm/config.h"

#include "core/buffer_layout.h"

namespace epcomm {

int64_t Config::get_nvl_buffer_size_hint(int64_t hidden_bytes, int32_t num_ranks) const {
  if (hidden_bytes <= 0 || num_ranks <= 0 || num_sms <= 0 || num_max_nvl_chunked_recv_tokens <= 0)
    return 0;
  // Staging rows per (channel, peer): a channel is one SM pair (sender + receiver), as in DeepEP,
  // each row carrying the data, FP8 scales and top-k metadata. Revised by the normal kernels.
  const int64_t num_channels = num_sms / 2 > 0 ? num_sms / 2 : 1;
  const int64_t row_bytes = hidden_bytes + hidden_bytes / 128 * 4 + 32 * 12;
  const int64_t rows = num_channels * num_ranks * int64_t{num_max_nvl_chunked_recv_tokens};
  return core::align_up(rows * row_bytes + int64_t{num_ranks} * num_ranks * 64, 128);
}

int64_t Config::get_rdma_buffer_size_hint(int64_t hidden_bytes, int32_t num_ranks) const {
  (void)hidden_bytes;
  (void)num_ranks;
  return 0;  // single node: the normal kernels use no RDMA buffer
}

// SM counts measured with epcomm_bench at 4096 tokens (docs/perf.md, "Default Configs"). With
// one peer (2 x H200, 181ffb7) both ops are fastest at 24 SMs. With three (4 x H200, 52a7dc7
// sweep) the dispatch is within 3 % from 24 to 32 SMs (BF16 573 / 557 us, FP8 319 / 329) and the
// combine is fastest at 24 (597 us; 634 at 32), so both take 24 and leave 8 SMs to the
// computation. Other world sizes are not measured yet and keep DeepEP's default of 20.
Config default_dispatch_config(int32_t num_ranks) {
  Config c;
  if (num_ranks == 2 || num_ranks == 4) c.num_sms = 24;
  return c;
}

Config default_combine_config(int32_t num_ranks) {
  Config c;
  if (num_ranks == 2 || num_ranks == 4) c.num_sms = 24;
  return c;
}

}  // namespace epcomm
