// Row copies through the Hopper bulk-copy engine (TMA, `cp.async.bulk`): one thread moves a
// row global -> shared -> global (a peer's memory over NVLink included) with kilobytes in flight
// per instruction and no registers per byte, where SM stores keep 4 KB per warp in flight
// (docs/perf.md, v10). Used by one lane of a warp; every helper says what it orders.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

constexpr int kBulkStageBytes = 8192;  // one staging buffer; rows move in chunks of this size
constexpr int kBulkStages = 2;         // per warp: a chunk loads while the previous one stores

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// A warp's staging buffers and their mbarriers, driven by one lane. `chunks` counts the chunks
// moved so far: chunk k uses stage k % kBulkStages, whose mbarrier completes its phase once per
// use, so the parity to wait for is (k / kBulkStages) % 2.
struct BulkRowCopier {
  uint8_t* stage;     // kBulkStages * kBulkStageBytes bytes of shared memory
  uint64_t* barrier;  // kBulkStages mbarriers in shared memory
  uint32_t chunks;

  // Once per warp, by the copying lane, before any copy.
  __device__ __forceinline__ void init() {
    for (int s = 0; s < kBulkStages; ++s)
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(barrier + s)));
    // Makes the initialised mbarriers visible to the async proxy (the bulk copies).
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    chunks = 0;
  }

  // Copies `bytes` (a multiple of 16; every address 16-byte aligned) from src (this GPU's
  // memory, written before this kernel) to each of dst[0, num_dst) (this GPU's or a peer's),
  // reading src once. Returns once the last chunk's stores are issued; finish() waits for them.
  template <class Dst>
  __device__ __forceinline__ void copy(const Dst* dst, int num_dst, const void* src,
                                       int64_t bytes) {
    for (int64_t off = 0; off < bytes; off += kBulkStageBytes) {
      const uint32_t n =
          static_cast<uint32_t>(bytes - off < kBulkStageBytes ? bytes - off : kBulkStageBytes);
      const uint32_t s = chunks % kBulkStages, parity = (chunks / kBulkStages) % 2;
      const uint32_t buf = smem_addr(stage + s * kBulkStageBytes), bar = smem_addr(barrier + s);
      // The stores that last read this stage (kBulkStages chunks ago) have finished reading it;
      // the newer kBulkStages - 1 chunks' stores may still be reading theirs.
      asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(kBulkStages - 1) : "memory");
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(n)
                   : "memory");
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
          "[%3];" ::"r"(buf),
          "l"(static_cast<const uint8_t*>(src) + off), "r"(n), "r"(bar)
          : "memory");
      // The mbarrier's phase completes once the chunk is in shared memory.
      asm volatile(
          "{\n"
          ".reg .pred done;\n"
          "wait_%=:\n"
          "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
          "@!done bra wait_%=;\n"
          "}" ::"r"(bar),
          "r"(parity)
          : "memory");
      for (int d = 0; d < num_dst; ++d)
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(
                         reinterpret_cast<uint8_t*>(dst[d]) + off),
                     "r"(buf), "r"(n)
                     : "memory");
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
      ++chunks;
    }
  }
  __device__ __forceinline__ void copy(void* dst, const void* src, int64_t bytes) {
    copy(&dst, 1, src, bytes);
  }

  // Waits until every issued store has been performed, then orders those writes (made by the
  // async proxy) before this thread's later generic-proxy operations, e.g. a tag release.
  __device__ __forceinline__ void finish() {
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
    asm volatile("fence.proxy.async.global;" ::: "memory");
  }
};

}  // namespace epcomm::kernels
