// Kernel durations as a profiler records them (CUPTI activity records): the accounting of
// DeepEP's low-latency figures (../shared/perf/baselines.md), next to the bench's own CUDA-event
// times, which also count the launch and the events. CUPTI is loaded at run time; where it is
// missing the bench reports event times only and says why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace epcomm::bench {

struct KernelRecord {
  std::string name;  // mangled
  uint32_t device = 0;
  uint64_t start_ns = 0, end_ns = 0;
};

class KernelTimer {
 public:
  // The process-wide timer, or null with the reason in *why.
  static KernelTimer* get(std::string* why);
  // Starts recording every kernel of the process.
  bool begin(std::string* why);
  // Stops and returns the kernels recorded since begin(), in start order. The caller has
  // synchronised the device first.
  std::vector<KernelRecord> end();

 private:
  KernelTimer() = default;
};

// Per-call durations (us) from `records`: the kernels on `device` whose names contain every
// string of `parts`, grouped in start order into `calls` calls of equally many kernels, of which
// the first `skip` calls are dropped. Empty (and *why set) when the kernels do not group evenly.
std::vector<double> per_call_us(const std::vector<KernelRecord>& records, uint32_t device,
                                const std::vector<std::string>& parts, int calls, int skip,
                                std::string* why);

}  // namespace epcomm::bench
