// Bulk copies from global to shared memory through the copy unit (cp.async.bulk), completed on
// an mbarrier: the bytes in flight hold no registers and no load slots of the issuing warp
// (docs/perf.md, v21). One lane issues; every lane that reads the data waits on the barrier.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

__device__ __forceinline__ uint32_t shared_addr(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// An mbarrier that completes a phase after `arrivals` arrivals and all expected bytes.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_addr(bar)), "r"(arrivals)
               : "memory");
}

// Release: the initialised barriers are visible to the copy unit's completions that follow.
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// Arms `bar` (one arrival, `bytes` expected) and starts the copy of `bytes` (a multiple of 16,
// both addresses 16-byte aligned) from global `src` to shared `dst`; the copy's completion
// counts the bytes down and so completes the barrier's phase.
__device__ __forceinline__ void bulk_load_to_shared(void* dst, const void* src, uint32_t bytes,
                                                    uint64_t* bar) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_addr(bar)),
               "r"(bytes)
               : "memory");
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
          "r"(shared_addr(dst)),
      "l"(src), "r"(bytes), "r"(shared_addr(bar))
      : "memory");
}

// Whether the phase with this parity completed. Acquire: the copied bytes are visible to this
// thread once it returns true.
__device__ __forceinline__ bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      " selp.u32 %0, 1, 0, p;\n}"
      : "=r"(done)
      : "r"(shared_addr(bar)), "r"(parity)
      : "memory");
  return done != 0;
}

}  // namespace epcomm::kernels
