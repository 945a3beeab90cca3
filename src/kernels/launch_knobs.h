// Launcher overrides from the environment, for measuring variants (docs/perf.md).
#pragma once

#include <cstdlib>
#include <cstring>

namespace epcomm::kernels {

// The positive integer in environment variable `name`, or 0 when it is unset or not positive.
// Callers read it once (a function-local static).
inline int env_override(const char* name) {
  const char* v = std::getenv(name);
  const int n = v != nullptr ? std::atoi(v) : 0;
  return n > 0 ? n : 0;
}

// Whether environment variable `name` is set to exactly `value`. Callers read it once.
inline bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

// How a normal kernel's block splits its warps, and how many rows a sender warp sends before it
// releases their arrival tags together (docs/perf.md, v10).
struct SenderSplit {
  int send_warps;
  int batch;
};

// `measured` with the environment's overrides applied: a sender count must leave at least one
// receiver warp of `warps_per_block`; 0 means no override.
inline SenderSplit with_overrides(SenderSplit measured, int send_warps_override, int batch_override,
                                  int warps_per_block) {
  if (send_warps_override > 0 && send_warps_override < warps_per_block)
    measured.send_warps = send_warps_override;
  if (batch_override > 0) measured.batch = batch_override;
  return measured;
}

}  // namespace epcomm::kernels
