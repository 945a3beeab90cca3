// Bootstrap: what each rank publishes through the all-gather at Buffer creation, and the
// checks on what comes back (architecture.md section 3).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "epcomm/buffer.h"
#include "epcomm/error.h"

namespace epcomm::runtime {

constexpr uint32_t kRankInfoMagic = 0x4d435045;  // "EPCM"
constexpr uint32_t kRankInfoVersion = 1;

struct RankInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t struct_size;
  int32_t rank;
  // The configuration every rank must agree on.
  int32_t num_ranks;
  int32_t gpus_per_node;
  int64_t num_nvl_bytes;
  int64_t num_rdma_bytes;
  int32_t low_latency_mode;
  int32_t ready;  // 1: the fields below are valid; 0: this rank failed before the exchange
  double timeout_seconds;
  // Where the rank runs.
  char hostname[64];
  char boot_id[40];
  char pci_bus_id[32];
  int32_t device;
  int32_t reserved;
  // What the peers map.
  cudaIpcMemHandle_t ipc_handle;
  int64_t total_bytes;
  char failure[192];  // when ready == 0: why
};

// Fills the identity and configuration fields (not the device or IPC fields).
RankInfo make_rank_info(const BufferOptions& options);

// Calls the all-gather, turning an exception into an Error.
Error all_gather(const AllGatherFn& fn, const void* mine, void* all, size_t bytes,
                 const char* what);

// Checks magic/version/size/rank of every entry, identical configuration (naming the rank and
// field that differ), readiness of every rank and a single host.
Error check_rank_infos(const std::vector<RankInfo>& infos, int32_t my_rank);

}  // namespace epcomm::runtime
