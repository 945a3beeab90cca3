// NCCL for the baseline, loaded at run time (dlopen) so that epcomm never links it and the
// benchmark still runs (without the baseline) where NCCL is absent. Only the few entry points
// the baseline needs are declared, with NCCL's C ABI.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace epcomm::bench {

struct NcclUniqueId {
  char internal[128];
};
using NcclComm = void*;

class Nccl {
 public:
  // Tries EPCOMM_NCCL_LIBRARY, then libnccl.so.2 on the loader path, then the PyTorch wheel's.
  bool load(std::string* error);
  bool loaded() const { return handle_ != nullptr; }

  int (*get_unique_id)(NcclUniqueId*) = nullptr;
  int (*comm_init_rank)(NcclComm*, int, NcclUniqueId, int) = nullptr;
  int (*comm_destroy)(NcclComm) = nullptr;
  int (*group_start)() = nullptr;
  int (*group_end)() = nullptr;
  int (*send)(const void*, size_t, int, int, NcclComm, cudaStream_t) = nullptr;
  int (*recv)(void*, size_t, int, int, NcclComm, cudaStream_t) = nullptr;
  const char* (*get_error_string)(int) = nullptr;

 private:
  void* handle_ = nullptr;
};

constexpr int kNcclUint8 = 1;  // ncclUint8 in NCCL's datatype enum

}  // namespace epcomm::bench
