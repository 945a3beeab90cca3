// PTX wrappers named by their memory-model semantics. Each caller says what it orders.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

// Load with acquire semantics at system scope: later reads of this thread see every write the
// releasing thread (any GPU) made before its matching release.
__device__ __forceinline__ uint64_t ld_acquire_sys(const uint64_t* ptr) {
  uint64_t value;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(value) : "l"(ptr) : "memory");
  return value;
}

// Store with release semantics at system scope: every earlier write of this thread is visible
// to a thread (any GPU) that observes this value through an acquire.
__device__ __forceinline__ void st_release_sys(uint64_t* ptr, uint64_t value) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(ptr), "l"(value) : "memory");
}

// 32-bit variants, for per-row arrival tags. Release: the writing warp's row stores (made
// visible by the fence before it) precede the tag; acquire: the row is visible after the tag.
__device__ __forceinline__ uint32_t ld_acquire_sys_u32(const uint32_t* ptr) {
  uint32_t value;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(value) : "l"(ptr) : "memory");
  return value;
}

__device__ __forceinline__ void st_release_sys_u32(uint32_t* ptr, uint32_t value) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(ptr), "r"(value) : "memory");
}

// Atomic add with acquire-release semantics at GPU scope; returns the old value. Release: this
// thread's earlier accesses (and what it observed) precede the add; acquire: the accesses that
// preceded the adds it follows precede this thread's later ones.
__device__ __forceinline__ uint32_t atom_add_acq_rel_gpu_u32(uint32_t* ptr, uint32_t value) {
  uint32_t old;
  asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], %2;"
               : "=r"(old)
               : "l"(ptr), "r"(value)
               : "memory");
  return old;
}

// Relaxed store at system scope: a release when it follows a fence.acq_rel.sys
// (__threadfence_system) of the same thread.
__device__ __forceinline__ void st_relaxed_sys_u32(uint32_t* ptr, uint32_t value) {
  asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(ptr), "r"(value) : "memory");
}

// Relaxed load at system scope, for flags in host-mapped memory that order nothing.
__device__ __forceinline__ int32_t ld_relaxed_sys(const int32_t* ptr) {
  int32_t value;
  asm volatile("ld.relaxed.sys.global.s32 %0, [%1];" : "=r"(value) : "l"(ptr) : "memory");
  return value;
}

// Nanoseconds of the GPU's global timer (wall-clock, not SM cycles).
__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  return ns;
}

// Barrier `id` (1-15; 0 is the one __syncthreads uses) among `threads` threads of the block, a
// multiple of 32: like bar.sync, it orders their shared-memory accesses before it before their
// accesses after it.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

// A hint, not a load: asks L2 to fetch the line holding `ptr` (no ordering, no result).
__device__ __forceinline__ void prefetch_l2(const void* ptr) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(ptr));
}

}  // namespace epcomm::kernels
