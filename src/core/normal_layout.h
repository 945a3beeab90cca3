// Layouts of the normal (high-throughput) kernels, shared by the runtime and the kernels.
//
// Design (docs/design.md, "Normal kernels"): after the count exchange every sender knows the
// final row of each token on each destination, so dispatch writes each row straight into the
// destination's receive area (worst-case sized, no ring buffers, no credits); the receiver copies
// the rows into the caller's outputs once every source has signalled. Combine mirrors it.
//
// Normal region (num_nvl_bytes) = [ dispatch area | combine area ], two equal halves, so a
// dispatch and a combine never wait for each other's buffer.
// Each area is structure-of-arrays over `capacity` rows:
//   dispatch: x row (row_bytes) | scales (G f32) | topk idx (K i32) | topk weights (K f32) | src
//   (i32)
//             | arrival tag (u32)
//   combine : x row (H bf16)    | topk weights (K f32) | arrival tag (u32)
// A sender writes a row, then releases its arrival tag (the call's epoch); receivers copy or
// reduce each row as soon as its tag shows the current epoch, overlapping with the sending.
// Signal area (after the barrier slots):
//   notify[parity][source]: signature, counts to each rank [R] i32, counts per local expert
//                           of the receiving rank [E_local] i32, then the epoch (uint64)
//   *_started[source] (signature valid), *_consumed[destination]: uint64 epochs;
//   *_signature[source]: uint64; *_done: unused since v4 (arrival tags replace them)
#pragma once

#include <cstdint>

#include "core/buffer_layout.h"
#include "core/host_device.h"

namespace epcomm::core {

constexpr int32_t kMaxNormalRanks = 64;
constexpr int32_t kNormalMaxExperts = 1024;

// Rows rank `src` sent to rank `d` in a dispatch, from its [R, R] rank_prefix_matrix (entry
// [s][d]: rows ranks 0..s sent to d).
EPCOMM_HOST_DEVICE int32_t sent_rows(const int32_t* rank_prefix_matrix, int32_t num_ranks,
                                     int32_t src, int32_t d) {
  return rank_prefix_matrix[src * num_ranks + d] -
         (src > 0 ? rank_prefix_matrix[(src - 1) * num_ranks + d] : 0);
}

struct NormalSignalLayout {
  int32_t num_ranks = 0;

  EPCOMM_HOST_DEVICE int64_t barrier_bytes() const {
    return align_up(int64_t{kMaxNormalRanks} * 8, 4096);
  }
  // One notify slot: 8-byte epoch, 8-byte signature, counts [R], expert counts [E_local max].
  EPCOMM_HOST_DEVICE int64_t notify_slot_bytes() const {
    return align_up(16 + 4 * int64_t{num_ranks} + 4 * int64_t{kNormalMaxExperts}, 128);
  }
  EPCOMM_HOST_DEVICE int64_t notify_slot(int32_t parity, int32_t source) const {
    return barrier_bytes() + (int64_t{parity & 1} * num_ranks + source) * notify_slot_bytes();
  }
  // After both parities of notify slots (notify_slot masks the parity, so compute the end).
  EPCOMM_HOST_DEVICE int64_t flags_offset() const {
    return align_up(barrier_bytes() + 2 * int64_t{num_ranks} * notify_slot_bytes(), 4096);
  }
  // kind: NormalFlag (below); one uint64 per rank, rows of kMaxNormalRanks, 128-byte aligned.
  EPCOMM_HOST_DEVICE int64_t flag(int32_t kind, int32_t rank) const {
    return flags_offset() + int64_t{kind} * align_up(8 * int64_t{kMaxNormalRanks}, 128) +
           8 * int64_t{rank};
  }
  EPCOMM_HOST_DEVICE int64_t end() const { return flag(8, 0); }
};

enum NormalFlag : int32_t {
  kDispatchDone = 0,
  kDispatchConsumed = 1,
  kCombineDone = 2,
  kCombineConsumed = 3,
  kDispatchSignature = 4,
  kCombineSignature = 5,
  kDispatchStarted = 6,  // the sender's signature is valid for this epoch
  kCombineStarted = 7,
};
constexpr int32_t kNumNormalFlags = 8;

// Structure-of-arrays receive area for one op (offsets relative to the area's start).
struct NormalArea {
  int64_t capacity = 0;  // rows
  int64_t x_offset = 0, scales_offset = 0, topk_idx_offset = 0, topk_weights_offset = 0,
          src_offset = 0;
  int64_t tag_offset = 0;  // uint32 per row: the epoch (low 32 bits) of the call that wrote it
  int64_t row_bytes = 0;
  int32_t num_scales = 0;  // G (0 for BF16)
  int32_t topk = 0;        // K (0 when no top-k travels)

  EPCOMM_HOST_DEVICE static int64_t bytes_per_row(int64_t row_bytes, int32_t num_scales,
                                                  int32_t topk, bool with_src) {
    return row_bytes + 4 * int64_t{num_scales} + 8 * int64_t{topk} + (with_src ? 4 : 0) + 4;
  }
  // Lays out as many rows as fit in area_bytes (each array 16-byte aligned).
  EPCOMM_HOST_DEVICE static NormalArea make(int64_t area_bytes, int64_t row_bytes,
                                            int32_t num_scales, int32_t topk, bool with_src) {
    NormalArea a;
    a.row_bytes = row_bytes;
    a.num_scales = num_scales;
    a.topk = topk;
    const int64_t per_row = bytes_per_row(row_bytes, num_scales, topk, with_src);
    int64_t cap = per_row > 0 ? (area_bytes - 6 * 16) / per_row : 0;
    a.capacity = cap < 0 ? 0 : cap;
    a.x_offset = 0;
    a.scales_offset = align_up(a.x_offset + a.capacity * row_bytes, 16);
    a.topk_idx_offset = align_up(a.scales_offset + a.capacity * 4 * num_scales, 16);
    a.topk_weights_offset = align_up(a.topk_idx_offset + a.capacity * 4 * topk, 16);
    a.src_offset = align_up(a.topk_weights_offset + a.capacity * 4 * topk, 16);
    a.tag_offset = align_up(a.src_offset + (with_src ? a.capacity * 4 : 0), 16);
    return a;
  }
};

struct NormalRegionLayout {
  int64_t dispatch_offset = 0, dispatch_bytes = 0, combine_offset = 0, combine_bytes = 0;
  static NormalRegionLayout make(int64_t num_nvl_bytes) {
    NormalRegionLayout l;
    l.dispatch_bytes = num_nvl_bytes / 2 / kRegionAlignment * kRegionAlignment;
    l.combine_offset = l.dispatch_bytes;
    l.combine_bytes = l.dispatch_bytes;
    return l;
  }
};

// 64-bit call signature checked by receivers so that ranks calling with different shapes fail
// with a clear error instead of reading garbage.
EPCOMM_HOST_DEVICE uint64_t normal_signature(int64_t row_bytes, int32_t num_scales, int32_t topk,
                                             int32_t num_channels) {
  return (static_cast<uint64_t>(row_bytes) << 24) ^ (static_cast<uint64_t>(num_scales) << 12) ^
         (static_cast<uint64_t>(topk) << 6) ^ static_cast<uint64_t>(num_channels) ^
         0x5eed000000000000ull;
}

}  // namespace epcomm::core
