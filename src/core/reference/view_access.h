// Element access through a TensorView's strides (host memory), for the CPU reference.
#pragma once

#include <cstdint>

#include "epcomm/tensor.h"

namespace epcomm::reference {

inline int64_t offset2(const TensorView& t, int64_t i, int64_t j) {
  return i * t.strides[0] + j * t.strides[1];
}

template <class T>
T& elem(const TensorView& t, int64_t i) {
  return static_cast<T*>(t.data)[i * t.strides[0]];
}

template <class T>
T& elem(const TensorView& t, int64_t i, int64_t j) {
  return static_cast<T*>(t.data)[offset2(t, i, j)];
}

template <class T>
T& elem(const TensorView& t, int64_t i, int64_t j, int64_t k) {
  return static_cast<T*>(t.data)[i * t.strides[0] + j * t.strides[1] + k * t.strides[2]];
}

// An index tensor element (int32 or int64) as int64.
inline int64_t index_at(const TensorView& t, int64_t i, int64_t j) {
  return t.dtype == DType::kInt64 ? elem<int64_t>(t, i, j) : elem<int32_t>(t, i, j);
}

inline void set_index(const TensorView& t, int64_t i, int64_t j, int64_t v) {
  if (t.dtype == DType::kInt64) {
    elem<int64_t>(t, i, j) = v;
  } else {
    elem<int32_t>(t, i, j) = static_cast<int32_t>(v);
  }
}

// Address of row i of a 2-D tensor (or [i][j] row of a 3-D tensor) as bytes.
inline uint8_t* row_ptr(const TensorView& t, int64_t i) {
  return static_cast<uint8_t*>(t.data) + i * t.strides[0] * static_cast<int64_t>(t.element_size());
}

}  // namespace epcomm::reference
