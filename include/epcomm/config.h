// Config: tuning of the normal (high-throughput) kernels. Any valid Config gives correct
// results; the defaults of default_dispatch_config()/default_combine_config() give good speed.
#pragma once

#include <cstdint>

#include "epcomm/export.h"

namespace epcomm {

struct EPCOMM_EXPORT Config {
  int32_t num_sms = 20;  // SMs the normal kernels may occupy
  // DeepEP's chunk fields, kept so that DeepEP Configs carry over. epcomm reads the NVLink
  // send chunk as the number of tokens a warp moves between progress updates; the receive
  // chunk bounds the staging rows per (channel, peer). RDMA fields are for multi-node.
  int32_t num_max_nvl_chunked_send_tokens = 6;
  int32_t num_max_nvl_chunked_recv_tokens = 256;
  int32_t num_max_rdma_chunked_send_tokens = 6;
  int32_t num_max_rdma_chunked_recv_tokens = 256;

  // DeepEP-compatible estimate from the chunk fields (callers ported from DeepEP use it).
  // epcomm's kernels write each row straight to its final place, so what they really need
  // depends on the token count: size buffers with get_normal_buffer_size_hint (size_hints.h);
  // a call whose rows do not fit fails with kBufferTooSmall and both sizes.
  int64_t get_nvl_buffer_size_hint(int64_t hidden_bytes, int32_t num_ranks) const;
  // Bytes of RDMA buffer (multi-node only; 0 on one node).
  int64_t get_rdma_buffer_size_hint(int64_t hidden_bytes, int32_t num_ranks) const;
};

// Recommended Configs per world size.
EPCOMM_EXPORT Config default_dispatch_config(int32_t num_ranks);
EPCOMM_EXPORT Config default_combine_config(int32_t num_ranks);

}  // namespace epcomm
