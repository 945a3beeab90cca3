// Element types that cross the epcomm API.
#pragma once

#include <cstddef>
#include <cstdint>

#include "epcomm/export.h"

namespace epcomm {

enum class DType : int32_t {
  kBFloat16 = 0,
  kFloat8E4M3 = 1,  // float8_e4m3fn: no infinities, one NaN pattern, max 448
  kFloat32 = 2,
  kInt32 = 3,
  kInt64 = 4,
  kBool = 5,  // one byte per element, 0 or 1
};

// Bytes per element.
EPCOMM_EXPORT size_t dtype_size(DType dtype);
// "bfloat16", "float8_e4m3fn", "float32", "int32", "int64", "bool"; "unknown" otherwise.
EPCOMM_EXPORT const char* dtype_name(DType dtype);
// Whether the value is one of the enumerators above (the C ABI passes plain integers).
EPCOMM_EXPORT bool dtype_is_valid(DType dtype);

}  // namespace epcomm
