// Turning CUDA runtime results into epcomm Errors.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "epcomm/error.h"

namespace epcomm::runtime {

inline Error cuda_error(cudaError_t status, const std::string& what) {
  if (status == cudaSuccess) return Error::success();
  return Error(ErrorCode::kCudaError, what + " failed: " + cudaGetErrorName(status) + " (" +
                                          cudaGetErrorString(status) + ")");
}

// Sets a device for the lifetime of the guard and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) cudaSetDevice(device);
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace epcomm::runtime
