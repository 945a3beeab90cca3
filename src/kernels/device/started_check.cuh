// The start of a call. Normal kernels (dispatch and combine), sending side: wait until a rank
// consumed what we wrote into its area in the previous call, then publish this call's signature
// and "started" epoch. Receiving side (normal and low-latency kernels): every rank's "started"
// flag for this epoch and the signature next to it, so that a rank called with other shapes is
// reported before anyone waits on row tags.
#pragma once

#include <cstdint>

#include "core/normal_layout.h"
#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/report.cuh"

namespace epcomm::kernels {

// One thread per rank `d`: true once rank d consumed (flag `consumed_flag`, our slot for d) our
// writes of the previous call; false when the wait failed (recorded).
template <class Params>
__device__ __forceinline__ bool consumed_by(const Params& p, const uint8_t* my_signals,
                                            int32_t consumed_flag, int32_t d, uint64_t epoch) {
  const core::NormalSignalLayout sig{p.num_ranks};
  const auto* consumed = reinterpret_cast<const uint64_t*>(my_signals + sig.flag(consumed_flag, d));
  // Acquire: rank d finished reading its area before we overwrite it.
  return bounded_wait(p.wait, d, core::WaitStage::kCompletion,
                      [&] { return ld_acquire_sys(consumed) + 1 >= epoch; });
}

// Block 0, thread d < R: writes our signature and this call's epoch into rank d's slots for us.
template <class Params>
__device__ __forceinline__ void publish_start(const Params& p, int32_t signature_flag,
                                              int32_t started_flag, uint64_t epoch) {
  if (blockIdx.x != 0 || threadIdx.x >= static_cast<unsigned>(p.num_ranks)) return;
  const core::NormalSignalLayout sig{p.num_ranks};
  uint8_t* peer_signals = p.peer_bases[threadIdx.x] + p.signal_offset;
  *reinterpret_cast<volatile uint64_t*>(peer_signals + sig.flag(signature_flag, p.rank)) =
      p.signature;
  // Release: the signature precedes the started epoch the rank acquires.
  st_release_sys(reinterpret_cast<uint64_t*>(peer_signals + sig.flag(started_flag, p.rank)), epoch);
}

// One thread per source s: waits until `started` shows `epoch` (s published its signature for
// this call), then compares that signature with `expected`. False after a failed wait or a
// mismatch, both recorded in `wait`.
__device__ __forceinline__ bool source_started(const WaitContext& wait, const uint64_t* started,
                                               const volatile uint64_t* signature,
                                               uint64_t expected, uint64_t epoch, int32_t s) {
  // Acquire: what source s published before "started" (its signature) is visible after this.
  if (!bounded_wait(wait, s, core::WaitStage::kDataArrival,
                    [&] { return ld_acquire_sys(started) >= epoch; }))
    return false;
  const uint64_t theirs = *signature;
  if (theirs == expected) return true;
  record_input_error(wait, core::WaitStage::kArgumentMismatch, s, static_cast<int64_t>(theirs),
                     static_cast<int64_t>(expected));
  return false;
}

// Called by the lanes of one warp. Params: DispatchParams or CombineParams (wait, signature,
// num_ranks). True in a lane when one of its ranks published another signature or its wait
// failed (both recorded).
template <class Params>
__device__ __forceinline__ bool start_mismatch(const Params& p, const uint8_t* my_signals,
                                               int32_t started_flag, int32_t signature_flag,
                                               uint64_t epoch, int lane) {
  const core::NormalSignalLayout sig{p.num_ranks};
  bool mismatch = false;
  for (int32_t s = lane; s < p.num_ranks; s += 32) {
    const auto* started = reinterpret_cast<const uint64_t*>(my_signals + sig.flag(started_flag, s));
    const auto* signature =
        reinterpret_cast<const volatile uint64_t*>(my_signals + sig.flag(signature_flag, s));
    if (!source_started(p.wait, started, signature, p.signature, epoch, s)) mismatch = true;
  }
  return mismatch;
}

}  // namespace epcomm::kernels
