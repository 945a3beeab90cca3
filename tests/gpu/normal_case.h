// One normal dispatch/combine case run on the GPU by every rank and checked against the CPU
// reference: every rank rebuilds every rank's inputs from the seed and runs the reference world.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/moe_data.h"
#include "device_tensor.h"
#include "world.h"

namespace epcomm::testing {

struct NormalCase {
  std::string name;
  InputSpec spec;
  std::vector<int64_t> tokens;  // per rank; empty: spec.num_tokens everywhere
  int64_t num_worst_tokens = 0;
  int32_t expert_alignment = 1;
  int32_t num_sms = 8;
  bool biases = true;
};

// Reference results of a case for every rank.
struct NormalExpected {
  std::vector<RankInputs> inputs;
  std::vector<LayoutOutputs> layouts;
  std::vector<DispatchOutputs> outs;
  std::vector<HostTensor> expert_x;  // bf16 combine inputs [N, H]
  std::vector<HostTensor> bias0, bias1;
  std::vector<HostTensor> combined, combined_w;
};

NormalExpected normal_reference(const NormalCase& c, int32_t num_ranks, uint64_t seed);
// The same with given inputs (one per rank).
NormalExpected normal_reference_with(std::vector<RankInputs> inputs, const NormalCase& c,
                                     int32_t num_ranks, uint64_t seed);
// Random bf16 [rows, cols] from a seed.
HostTensor random_bf16(int64_t rows, int64_t cols, uint64_t seed);

// Device tensors of one rank's dispatch (outputs and handle).
struct NormalDeviceRun {
  DeviceTensor x, scales, topk, weights, per_rank, per_expert, in_rank;
  DeviceTensor rpm, src_idx, in_rank_copy, send_slot;
  DeviceTensor recv_x, recv_scales, recv_topk, recv_w;
  DeviceTensor expert_x, bias0, bias1, combined, combined_w;
  DispatchCounts counts;
  // Host copy of rank_prefix_matrix that dispatch_notify fills (empty with num_worst_tokens);
  // with it the combine may send its rows with the copy engines (EPCOMM_COMBINE_COPY).
  std::vector<int32_t> rpm_host;
  DispatchHandle handle(int64_t num_recv) const;
};

// Runs layout, notify (unless worst-case), dispatch and combine on this rank and checks each
// output against the reference. Returns the device run for further checks.
NormalDeviceRun run_normal_case(GpuRank& r, Buffer& buffer, const NormalCase& c,
                                const NormalExpected& want);

// Byte-exact comparison of the first `rows` rows (all rows when rows < 0) of two tensors.
void expect_rows_equal(const HostTensor& got, const HostTensor& want, int64_t rows,
                       const std::string& what);

}  // namespace epcomm::testing
