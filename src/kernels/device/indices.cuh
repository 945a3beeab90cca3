// Reading top-k index tensors that may be int32 or int64.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

__device__ __forceinline__ int64_t load_index(const void* base, bool is64, int64_t off) {
  return is64 ? static_cast<const int64_t*>(base)[off] : static_cast<const int32_t*>(base)[off];
}

}  // namespace epcomm::kernels
