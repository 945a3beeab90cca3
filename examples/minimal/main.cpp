// Minimal epcomm program: size hints, argument validation and a one-rank Buffer.
// Build: cmake -S . -B build -DCMAKE_PREFIX_PATH=<epcomm install prefix> && cmake --build build
#include <cstdio>
#include <cstring>

#include <epcomm/epcomm.hpp>

int main() {
  std::printf("epcomm %s\n", epcomm::version());
  std::printf(
      "low-latency buffer for 128 tokens/rank, hidden 7168, 4 ranks, 288 experts: %lld bytes\n",
      static_cast<long long>(epcomm::get_low_latency_buffer_size_hint(128, 7168, 4, 288)));

  // A one-rank group: the all-gather just copies this rank's bytes.
  epcomm::BufferOptions options;
  options.num_rdma_bytes = epcomm::get_low_latency_buffer_size_hint(128, 7168, 1, 8);
  auto all_gather = [](const void* mine, void* all, size_t bytes) {
    std::memcpy(all, mine, bytes);
  };
  std::unique_ptr<epcomm::Buffer> buffer;
  if (epcomm::Error e = epcomm::Buffer::create(options, all_gather, &buffer); !e.ok()) {
    // On a machine without a GPU this is the expected outcome: a clear error, no crash.
    std::printf("no Buffer on this machine: %s\n", e.to_string().c_str());
    return 0;
  }
  if (epcomm::Error e = buffer->barrier(nullptr); !e.ok())
    return std::printf("%s\n", e.to_string().c_str()), 1;
  if (epcomm::Error e = buffer->synchronize(nullptr); !e.ok())
    return std::printf("%s\n", e.to_string().c_str()), 1;
  std::printf("one-rank Buffer on device %d: barrier ok\n", buffer->device());
  return 0;
}
