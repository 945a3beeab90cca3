// The receiving side's first step in the normal kernels: every rank's "started" flag for this
// epoch, and the call signature it published next to it, so that a rank called with other shapes
// is reported before anyone waits on row tags.
#pragma once

#include <cstdint>

#include "core/normal_layout.h"
#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/report.cuh"

namespace epcomm::kernels {

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
    // Acquire: rank s's signature for this epoch is visible after this.
    if (!bounded_wait(p.wait, s, core::WaitStage::kDataArrival,
                      [&] { return ld_acquire_sys(started) >= epoch; })) {
      mismatch = true;
      continue;
    }
    const uint64_t theirs =
        *reinterpret_cast<const volatile uint64_t*>(my_signals + sig.flag(signature_flag, s));
    if (theirs != p.signature) {
      record_input_error(p.wait, core::WaitStage::kArgumentMismatch, s,
                         static_cast<int64_t>(theirs), static_cast<int64_t>(p.signature));
      mismatch = true;
    }
  }
  return mismatch;
}

}  // namespace epcomm::kernels
