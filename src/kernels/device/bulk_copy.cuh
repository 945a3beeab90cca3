// Bulk copies through the copy unit (cp.async.bulk): global to shared memory, completed on an
// mbarrier, and shared to global memory (a peer's included), completed as bulk groups. The
// bytes in flight hold no registers and no load slots of the issuing warp (docs/perf.md, v21).
// One lane issues; every lane that reads loaded data waits on the barrier.
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

// Starts the copy of `bytes` (a multiple of 16, both addresses 16-byte aligned) from shared
// `src` to global `dst` (a peer's memory too) as one bulk group of this thread.
__device__ __forceinline__ void bulk_store_from_shared(void* dst, const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst),
               "r"(shared_addr(src)), "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

// Waits until this thread's bulk stores have read their shared source (the stages are free).
__device__ __forceinline__ void bulk_wait_reads() {
  asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}

// Waits until this thread's bulk stores are complete, then orders their writes (async proxy)
// before this thread's later generic-proxy accesses, such as a tag's release.
__device__ __forceinline__ void bulk_wait_writes() {
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
  asm volatile("fence.proxy.async.global;" ::: "memory");
}

}  // namespace epcomm::kernels
