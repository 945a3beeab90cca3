// What a bounded wait needs to know (plain struct: host code fills it, kernels read it).
#pragma once

#include <cstdint>

#include "core/error_record.h"

namespace epcomm::kernels {

struct WaitContext {
  core::DeviceErrorRecord* error;    // mapped pinned memory
  const core::HostControl* control;  // mapped pinned memory
  // Device memory of this GPU: set with the record, so that the other waits of this GPU learn
  // of a failure without reading the record over PCIe. Never cleared (the Buffer has failed).
  int32_t* failed;
  uint64_t timeout_ns;
  // How often one waiting thread checks the abort flag (host-mapped, read over PCIe), the
  // failure word and the timeout (docs/perf.md, v4 and v9).
  uint64_t flag_check_ns;
  int32_t op;    // core::OpId
  int32_t rank;  // this rank
};

}  // namespace epcomm::kernels
