// HostTensor: an owning host tensor for the CPU reference, tests and demos. view() gives the
// TensorView that the API takes.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "epcomm/tensor.h"

namespace epcomm::reference {

class HostTensor {
 public:
  HostTensor() = default;
  // Row-major tensor, zero-filled.
  HostTensor(DType dtype, std::vector<int64_t> shape);
  // [..., rows, cols] stored column-major in the last two dimensions (the low-latency scales).
  static HostTensor column_major_last2(DType dtype, std::vector<int64_t> shape);

  TensorView view() const;
  bool defined() const { return !shape_.empty() || !bytes_.empty(); }
  DType dtype() const { return dtype_; }
  int64_t size(int dim) const { return shape_[dim]; }
  int64_t numel() const;
  const std::vector<int64_t>& strides() const { return strides_; }

  template <class T>
  T* data() {
    return reinterpret_cast<T*>(bytes_.data());
  }
  template <class T>
  const T* data() const {
    return reinterpret_cast<const T*>(bytes_.data());
  }
  // Element at a multi-index (strides honoured).
  template <class T>
  T& at(std::initializer_list<int64_t> index) {
    return data<T>()[offset(index)];
  }
  template <class T>
  const T& at(std::initializer_list<int64_t> index) const {
    return data<T>()[offset(index)];
  }
  void fill_bytes(uint8_t value) { std::memset(bytes_.data(), value, bytes_.size()); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  int64_t offset(std::initializer_list<int64_t> index) const;
  DType dtype_ = DType::kFloat32;
  std::vector<int64_t> shape_;
  std::vector<int64_t> strides_;
  std::vector<uint8_t> bytes_;
};

}  // namespace epcomm::reference
