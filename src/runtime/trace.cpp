#include "runtime/trace.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/low_latency.h"
#include "kernels/normal_trace.h"
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

namespace {

Error arm(BufferTraceState& state, int blocks, int slots, cudaStream_t stream, uint64_t** out) {
  *out = nullptr;
  if (!trace_enabled()) return Error::success();
  const size_t bytes = size_t(blocks) * slots * sizeof(uint64_t);
  if (blocks > state.blocks || slots != state.slots) {
    free_trace(state);
    if (auto e = cuda_error(cudaMalloc(&state.device, bytes), "cudaMalloc of a phase trace");
        !e.ok())
      return e;
    state.blocks = blocks;
    state.slots = slots;
  }
  if (auto e = cuda_error(cudaMemsetAsync(state.device, 0, bytes, stream), "trace reset"); !e.ok())
    return e;
  state.pending = true;
  *out = state.device;
  return Error::success();
}

// The trace of the last armed launch (empty when none is pending or the copy fails), and the
// earliest start (slot 0) over blocks.
std::vector<uint64_t> collect(BufferTraceState& state, uint64_t* start) {
  if (!state.pending) return {};
  state.pending = false;
  std::vector<uint64_t> t(size_t(state.blocks) * state.slots);
  if (cudaMemcpy(t.data(), state.device, t.size() * 8, cudaMemcpyDeviceToHost) != cudaSuccess)
    return {};
  *start = ~0ull;
  for (int b = 0; b < state.blocks; ++b)
    if (t[size_t(b) * state.slots] != 0) *start = std::min(*start, t[size_t(b) * state.slots]);
  return t;
}

// min / median / max over blocks of one slot, us after `start` ("-" where no block wrote it).
std::string spread(const BufferTraceState& state, const std::vector<uint64_t>& t, uint64_t start,
                   int slot) {
  std::vector<double> v;
  for (int b = 0; b < state.blocks; ++b) {
    const uint64_t x = t[size_t(b) * state.slots + slot];
    if (x != 0) v.push_back((x - start) / 1e3);
  }
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%.1f/%.1f/%.1f", v.front(), v[v.size() / 2], v.back());
  return buf;
}

// One line for a normal op's trace: slots 0-7 as in kernels/normal_trace.h,
// the receiving warps called `receivers` and what they do per row `done`.
void report_normal(BufferTraceState& state, int32_t rank, const char* op, const char* receivers,
                   const char* done) {
  uint64_t start = 0;
  const std::vector<uint64_t> t = collect(state, &start);
  if (t.empty()) return;
  uint64_t wait_ns = 0, waits = 0, during_sends = 0, total = 0;
  for (int b = 0; b < state.blocks; ++b) {
    wait_ns += t[size_t(b) * state.slots + 4];
    waits += t[size_t(b) * state.slots + 5];
    during_sends += t[size_t(b) * state.slots + 6];
    total += t[size_t(b) * state.slots + 7];
  }
  std::fprintf(stderr,
               "[epcomm trace] %s rank %d, %d blocks, us after the first block's start "
               "(min/median/max over blocks): senders done %s, %s done %s, end %s; %s waits "
               "%llu, %.1f us each on average; %s before the block's sends ended %llu of %llu\n",
               op, rank, state.blocks, spread(state, t, start, 1).c_str(), receivers,
               spread(state, t, start, 2).c_str(), spread(state, t, start, 3).c_str(), receivers,
               static_cast<unsigned long long>(waits), waits ? wait_ns / 1e3 / waits : 0.0, done,
               static_cast<unsigned long long>(during_sends),
               static_cast<unsigned long long>(total));
}

}  // namespace

Error arm_dispatch_trace(BufferTraceState& state, int blocks, cudaStream_t stream, uint64_t** out) {
  return arm(state, blocks, kernels::kNormalTraceSlots, stream, out);
}

Error arm_combine_trace(BufferTraceState& state, int blocks, cudaStream_t stream, uint64_t** out) {
  return arm(state, blocks, kernels::kNormalTraceSlots, stream, out);
}

Error arm_low_latency_trace(BufferTraceState& state, int blocks, cudaStream_t stream,
                            uint64_t** out) {
  return arm(state, blocks, kernels::kLlTraceSlots, stream, out);
}

void report_dispatch_trace(BufferTraceState& state, int32_t rank) {
  report_normal(state, rank, "dispatch", "receivers", "rows copied out");
}

void report_combine_trace(BufferTraceState& state, int32_t rank) {
  report_normal(state, rank, "combine", "reducers", "tokens reduced");
}

void report_low_latency_trace(BufferTraceState& state, int32_t rank, const char* op) {
  uint64_t start = 0;
  const std::vector<uint64_t> t = collect(state, &start);
  if (t.empty()) return;
  std::string line;
  for (int slot = 1; slot < kernels::kLlTraceSlots; ++slot)
    line += std::string(slot > 1 ? ", " : "") + kernels::kLlTraceSlotNames[slot] + " " +
            spread(state, t, start, slot);
  std::fprintf(stderr,
               "[epcomm trace] %s rank %d, %d blocks, us after the first block's start "
               "(min/median/max over blocks): %s\n",
               op, rank, state.blocks, line.c_str());
}

void free_trace(BufferTraceState& state) {
  if (state.device) cudaFree(state.device);
  state.device = nullptr;
  state.blocks = 0;
  state.slots = 0;
  state.pending = false;
}

}  // namespace epcomm::runtime
