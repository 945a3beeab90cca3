// Test kernels: fill memory (local or a peer's mapped buffer) with a seeded pattern, and count
// the words that differ from it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace epcomm::testing {

cudaError_t write_pattern(uint32_t* dst, int64_t num_words, uint32_t seed, cudaStream_t stream);
// Adds the number of mismatching words to *mismatches (device memory).
cudaError_t count_mismatches(const uint32_t* src, int64_t num_words, uint32_t seed,
                             unsigned long long* mismatches, cudaStream_t stream);

}  // namespace epcomm::testing
