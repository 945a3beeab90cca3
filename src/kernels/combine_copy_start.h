// The start of a combine whose rows the copy engines send (docs/perf.md, v23): one small kernel
// before the copies. It checks the host's row counts against the device matrix, waits until
// every rank consumed our rows of the previous combine, then writes this call's arrival tag into
// the word the copy engines copy onto each chunk's tag, and publishes "started".
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/intranode_combine.h"

namespace epcomm::kernels {

constexpr int kMaxCopyRanks = 64;

struct CombineCopyStartParams {
  CombineParams combine;  // rank_prefix_matrix, peer_bases, signal_offset, area, epoch_counter,
                          // signature, num_ranks, rank, wait (as for the combine kernel)
  // The host's view (handle.rank_prefix_matrix_host), checked against the device matrix:
  int32_t rows_from[kMaxCopyRanks];  // rows we received from rank s (and return to it)
  int32_t base_at[kMaxCopyRanks];    // their first row in s's combine area
  uint32_t* tag_word;                // device word: the arrival tag the copies write
};

cudaError_t launch_combine_copy_start(const CombineCopyStartParams& params, cudaStream_t stream);

}  // namespace epcomm::kernels
