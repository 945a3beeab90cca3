// epcomm: expert-parallel communication for Mixture-of-Experts models (C++ API).
// Torch-free and CUDA-header-free: includes with any C++20 compiler.
#pragma once

#include "epcomm/buffer.h"
#include "epcomm/config.h"
#include "epcomm/dispatch.h"
#include "epcomm/dtype.h"
#include "epcomm/error.h"
#include "epcomm/layout.h"
#include "epcomm/low_latency.h"
#include "epcomm/size_hints.h"
#include "epcomm/tensor.h"
#include "epcomm/topology.h"
#include "epcomm/version.h"

namespace epcomm {
// "0.1.0"
EPCOMM_EXPORT const char* version();
}  // namespace epcomm
