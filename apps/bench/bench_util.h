// Helpers shared by the benchmark's op families: error checks, device allocations, views, and
// the timer that aligns the ranks before each measured call.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <initializer_list>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_normal.h"
#include "epcomm/epcomm.hpp"
#include "kernel_timer.h"

namespace epcomm::bench {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

inline void check(const Error& e, const char* what) {
  if (!e.ok()) throw std::runtime_error(std::string(what) + ": " + e.to_string());
}

struct DevMem {
  void* p = nullptr;
  explicit DevMem(size_t bytes) { check_cuda(cudaMalloc(&p, bytes ? bytes : 16), "cudaMalloc"); }
  ~DevMem() { cudaFree(p); }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

inline TensorView view(const DevMem& m, DType dt, std::initializer_list<int64_t> shape,
                       int device) {
  return TensorView::contiguous(m.p, dt, shape, DeviceKind::kCuda, device);
}

// Times calls with CUDA events: per iteration, optionally flush L2, align the ranks with a GPU
// barrier, run `prepare` (untimed), record, run `fn`, record, run `finish` (untimed).
class OpTimer {
 public:
  // flush_bytes > 0: write that many bytes before each call, so inputs are not served from L2.
  OpTimer(Buffer& buffer, cudaStream_t stream, int warmup, int iters, size_t flush_bytes = 0)
      : buffer_(buffer),
        stream_(stream),
        warmup_(warmup),
        iters_(iters),
        flush_bytes_(flush_bytes) {
    check_cuda(cudaEventCreate(&a_), "event");
    check_cuda(cudaEventCreate(&b_), "event");
    if (flush_bytes_ > 0) check_cuda(cudaMalloc(&flush_, flush_bytes_), "cudaMalloc (L2 flush)");
  }
  ~OpTimer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
    cudaFree(flush_);
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

  template <class Prepare, class Fn, class Finish>
  Sample time(const char* op, const char* dtype, double bytes, double nvlink_bytes,
              Prepare&& prepare, Fn&& fn, Finish&& finish) {
    std::vector<float> ms;
    for (int i = 0; i < warmup_ + iters_; ++i) {
      flush_and_align(i);
      prepare();
      check_cuda(cudaEventRecord(a_, stream_), "record");
      fn();
      check_cuda(cudaEventRecord(b_, stream_), "record");
      finish();
      check_cuda(cudaEventSynchronize(b_), "sync");
      float t = 0;
      check_cuda(cudaEventElapsedTime(&t, a_, b_), "elapsed");
      if (i >= warmup_) ms.push_back(t);
    }
    check(buffer_.synchronize(stream_), op);
    std::sort(ms.begin(), ms.end());
    Sample s;
    s.op = op;
    s.dtype = dtype;
    s.mean_us = 1e3 * std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
    s.median_us = 1e3 * ms[ms.size() / 2];
    s.bytes = bytes;
    s.nvlink_bytes = nvlink_bytes;
    return s;
  }
  template <class Fn>
  Sample time(const char* op, const char* dtype, double bytes, double nvlink_bytes, Fn&& fn) {
    return time(
        op, dtype, bytes, nvlink_bytes, [] {}, fn, [] {});
  }

  // The same loop with CUPTI recording kernels: time_us is the duration of the kernels on this
  // rank's device whose names contain every string of `parts`, per call, as a profiler records
  // it (DeepEP's low-latency accounting). False, with the reason in *why, where CUPTI is missing
  // or the kernels do not group into one set per call. Collective: every rank runs the loop.
  template <class Fn>
  bool time_kernels(const char* op, const char* dtype, double bytes,
                    const std::vector<std::string>& parts, Fn&& fn, Sample* out, std::string* why) {
    KernelTimer* timer = KernelTimer::get(why);
    if (timer == nullptr) return false;
    const bool on = timer->begin(why);
    for (int i = 0; i < warmup_ + iters_; ++i) {
      flush_and_align(i);
      fn();
    }
    check(buffer_.synchronize(stream_), op);
    check_cuda(cudaDeviceSynchronize(), "synchronize");
    if (!on) return false;
    std::vector<double> us = per_call_us(timer->end(), static_cast<uint32_t>(buffer_.device()),
                                         parts, warmup_ + iters_, warmup_, why);
    if (us.empty()) return false;
    std::sort(us.begin(), us.end());
    out->op = op;
    out->dtype = dtype;
    out->mean_us = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size());
    out->median_us = us[us.size() / 2];
    out->bytes = bytes;
    out->nvlink_bytes = 0;
    return true;
  }

 private:
  // Before call i: the L2 flush (when asked for), then a GPU barrier that aligns the ranks.
  void flush_and_align(int i) {
    if (flush_ != nullptr)
      check_cuda(cudaMemsetAsync(flush_, i & 0xff, flush_bytes_, stream_), "L2 flush");
    check(buffer_.barrier(stream_), "barrier");
  }

  Buffer& buffer_;
  cudaStream_t stream_;
  int warmup_, iters_;
  size_t flush_bytes_;
  void* flush_ = nullptr;
  cudaEvent_t a_{}, b_{};
};

}  // namespace epcomm::bench
