#include "kernels/combine_copy_start.h"
#include "kernels/device/report.cuh"
#include "kernels/device/started_check.cuh"

namespace epcomm::kernels {
namespace {

// One block of kMaxCopyRanks threads; thread s < R checks rank s. Nothing is written for the
// copies (the tag word keeps its old epoch, so no rank takes the rows as arrived) unless every
// check passed.
__global__ void __launch_bounds__(kMaxCopyRanks)
    combine_copy_start_kernel(CombineCopyStartParams q) {
  const CombineParams& p = q.combine;
  const int32_t R = p.num_ranks, me = p.rank;
  const int32_t s = static_cast<int32_t>(threadIdx.x);
  // The combine kernel reads the same value: only its last block advances the counter.
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(p.epoch_counter) + 1;
  __shared__ bool ok;
  if (s == 0) ok = true;
  __syncthreads();
  if (s < R) {
    const int32_t* m = p.rank_prefix_matrix;
    const auto sent = [&](int32_t src, int32_t d) { return core::sent_rows(m, R, src, d); };
    int32_t base = 0, need = 0;
    for (int32_t d = 0; d < R; ++d) {
      if (d < me) base += sent(s, d);
      need += sent(s, d);
    }
    const int32_t rows = sent(s, me);
    if (rows != q.rows_from[s] || base != q.base_at[s]) {
      record_input_error(p.wait, core::WaitStage::kHostMatrixMismatch, s, q.rows_from[s], rows);
      ok = false;
    } else if (need > p.area.capacity) {  // the host checked this with its copy
      record_input_error(p.wait, core::WaitStage::kBufferTooSmall, s, need, p.area.capacity);
      ok = false;
    }
    const uint8_t* my_signals = p.peer_bases[me] + p.signal_offset;
    if (!consumed_by(p, my_signals, core::kCombineConsumed, s, epoch)) ok = false;
  }
  __syncthreads();
  if (!ok) return;
  // Stream order (this kernel completes before the copies start) carries the tag word to the
  // copy engines; the copies carry it to the peers after each chunk's rows.
  if (s == 0) *q.tag_word = static_cast<uint32_t>(epoch);
  publish_start(p, core::kCombineSignature, core::kCombineStarted, epoch);
}

}  // namespace

cudaError_t launch_combine_copy_start(const CombineCopyStartParams& params, cudaStream_t stream) {
  combine_copy_start_kernel<<<1, kMaxCopyRanks, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
