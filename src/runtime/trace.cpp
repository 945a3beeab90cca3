#include "runtime/trace.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/intranode_combine.h"
#include "runtime/cuda_check.h"

namespace epcomm::runtime {

bool trace_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("EPCOMM_TRACE");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

uint64_t flag_check_ns() {
  static const uint64_t ns = [] {
    const char* v = std::getenv("EPCOMM_FLAG_CHECK_NS");
    const unsigned long long parsed = v != nullptr ? std::strtoull(v, nullptr, 10) : 0;
    return parsed > 0 ? uint64_t{parsed} : uint64_t{1000000};
  }();
  return ns;
}

Error arm_combine_trace(BufferTraceState& state, int blocks, cudaStream_t stream, uint64_t** out) {
  *out = nullptr;
  if (!trace_enabled()) return Error::success();
  const size_t bytes = size_t(blocks) * kernels::kCombineTraceSlots * sizeof(uint64_t);
  if (blocks > state.blocks) {
    free_trace(state);
    if (auto e = cuda_error(cudaMalloc(&state.device, bytes), "cudaMalloc of the combine trace");
        !e.ok())
      return e;
    state.blocks = blocks;
  }
  if (auto e = cuda_error(cudaMemsetAsync(state.device, 0, bytes, stream), "trace reset"); !e.ok())
    return e;
  state.pending = true;
  *out = state.device;
  return Error::success();
}

void report_combine_trace(BufferTraceState& state, int32_t rank) {
  if (!state.pending) return;
  state.pending = false;
  std::vector<uint64_t> t(size_t(state.blocks) * kernels::kCombineTraceSlots);
  if (cudaMemcpy(t.data(), state.device, t.size() * 8, cudaMemcpyDeviceToHost) != cudaSuccess)
    return;
  uint64_t start = ~0ull;
  for (int b = 0; b < state.blocks; ++b)
    if (t[b * kernels::kCombineTraceSlots] != 0)
      start = std::min(start, t[b * kernels::kCombineTraceSlots]);
  auto spread = [&](int slot) {  // min / median / max over blocks, us after the first start
    std::vector<double> v;
    for (int b = 0; b < state.blocks; ++b) {
      const uint64_t x = t[b * kernels::kCombineTraceSlots + slot];
      if (x != 0) v.push_back((x - start) / 1e3);
    }
    std::sort(v.begin(), v.end());
    char buf[96];
    if (v.empty()) return std::string("-");
    std::snprintf(buf, sizeof(buf), "%.1f/%.1f/%.1f", v.front(), v[v.size() / 2], v.back());
    return std::string(buf);
  };
  uint64_t wait_ns = 0, waits = 0;
  for (int b = 0; b < state.blocks; ++b) {
    wait_ns += t[b * kernels::kCombineTraceSlots + 4];
    waits += t[b * kernels::kCombineTraceSlots + 5];
  }
  std::fprintf(stderr,
               "[epcomm trace] combine rank %d, %d blocks, us after the first block's start "
               "(min/median/max over blocks): senders done %s, reducers done %s, end %s; "
               "reducer waits %llu, %.1f us each on average\n",
               rank, state.blocks, spread(1).c_str(), spread(2).c_str(), spread(3).c_str(),
               static_cast<unsigned long long>(waits), waits ? wait_ns / 1e3 / waits : 0.0);
}

void free_trace(BufferTraceState& state) {
  if (state.device) cudaFree(state.device);
  state.device = nullptr;
  state.blocks = 0;
  state.pending = false;
}

}  // namespace epcomm::runtime
