// Deterministic MoE inputs and a full reference pipeline for tests: every rank derives its
// inputs from (seed, rank), so any process can rebuild any rank's data and expected outputs.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "core/numeric.h"
#include "core/reference/host_tensor.h"
#include "core/reference/sim_world.h"

namespace epcomm::testing {

using reference::HostTensor;

struct InputSpec {
  int64_t num_tokens = 16;
  int64_t hidden = 256;
  int64_t topk = 4;
  int32_t num_experts = 16;
  double mask_prob = 0.1;  // chance that a top-k entry is -1
  DType index_dtype = DType::kInt64;
  bool fp8 = false;  // x as FP8 with scales
  bool column_major_scales = false;
  int32_t hot_expert = -1;  // >= 0: most selections go to this expert
};

struct RankInputs {
  HostTensor x;             // [T, H] bf16 or fp8
  HostTensor x_scales;      // [T, H/128] float32 (fp8 only)
  HostTensor topk_idx;      // [T, K]
  HostTensor topk_weights;  // [T, K]
};

// Random values in [-4, 4) as bf16; top-k without repeated experts; masked entries.
RankInputs make_inputs(const InputSpec& spec, int32_t rank, uint64_t seed);

struct LayoutOutputs {
  HostTensor num_tokens_per_rank, num_tokens_per_expert, is_token_in_rank;
  LayoutArgs args(const TensorView& topk_idx, int32_t num_experts) const;
};
LayoutOutputs make_layout_outputs(int64_t num_tokens, int32_t num_ranks, int32_t num_experts);

struct DispatchOutputs {
  HostTensor recv_x, recv_x_scales, recv_topk_idx, recv_topk_weights;
  HostTensor rank_prefix_matrix, recv_src_idx, is_token_in_rank, send_slot;
  DispatchCounts counts;
  DispatchHandle handle() const;
};

struct PipelineOptions {
  int32_t expert_alignment = 1;
  int64_t num_worst_tokens = 0;
  bool with_topk = true;
};

// Layout, notify (unless worst-case sizing) and dispatch on every rank of `world`.
// Fails the calling test (and returns partial outputs) when an op returns an error.
std::vector<DispatchOutputs> run_dispatch(const reference::SimWorld& world,
                                          const std::vector<RankInputs>& inputs,
                                          const InputSpec& spec, const PipelineOptions& opts,
                                          std::vector<LayoutOutputs>* layouts = nullptr);

// bf16 bits of a float
inline uint16_t bf16(float f) {
  return core::float_to_bf16(f);
}
inline float f32(uint16_t b) {
  return core::bf16_to_float(b);
}

}  // namespace epcomm::testing
