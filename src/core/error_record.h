// The record a kernel writes when a bounded wait gives up, read by the host through mapped
// pinned memory (architecture.md section 5). Shared by the kernels and the runtime.
#pragma once

#include <cstdint>

namespace epcomm::core {

enum class OpId : int32_t {
  kNone = 0,
  kBarrier = 1,
  kLayout = 2,
  kDispatchNotify = 3,
  kDispatch = 4,
  kCombine = 5,
  kLowLatencyDispatch = 6,
  kLowLatencyCombine = 7,
};

enum class WaitStage : int32_t {
  kNone = 0,
  kBarrierFlag = 1,    // waiting for a peer's barrier slot
  kCountExchange = 2,  // waiting for a peer's token counts
  kDataArrival = 3,    // waiting for a peer's rows
  kCompletion = 4,     // waiting for a peer to finish reading our rows
  // Not waits: input errors only the GPU can see (values in device memory).
  kInvalidExpertId = 5,     // value = the id, limit = num_experts, peer = flat position
  kBufferTooSmall = 6,      // value = rows needed on rank `peer`, limit = rows that fit
  kArgumentMismatch = 7,    // rank `peer` called with a different shape (signature)
  kTooManyTokens = 8,       // value = rows received, limit = num_worst_tokens
  kHostMatrixMismatch = 9,  // handle.rank_prefix_matrix_host differs from the device matrix:
                            // value = rows for rank `peer` by the host copy, limit = by the device
  kRoutingMismatch = 10,    // LL combine: source `peer`'s token names `limit` experts here, its
                            // dispatch delivered `value` rows of them (topk_idx differs)
};

enum RecordStatus : int32_t { kRecordEmpty = 0, kRecordWriting = 1, kRecordValid = 2 };

struct DeviceErrorRecord {
  int32_t status;  // RecordStatus; claimed with a compare-and-swap so the first error wins
  int32_t op;      // OpId
  int32_t rank;    // the rank that waited
  int32_t peer;    // the first peer it gave up on
  int32_t stage;   // WaitStage
  int32_t reserved;
  uint64_t peer_mask;  // every peer (rank < 64) some wait gave up on
  uint64_t waited_ns;  // how long the first wait lasted
  int64_t value;       // input errors: the offending value
  int64_t limit;       // input errors: the bound it broke
};

// Host-written, device-read: a non-zero value makes every bounded wait give up.
struct HostControl {
  int32_t abort_flag;
  int32_t reserved[31];
};

const char* op_name(OpId op);
const char* stage_name(WaitStage stage);

}  // namespace epcomm::core
