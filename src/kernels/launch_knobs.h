// Launcher overrides from the environment, for measuring variants (docs/perf.md).
#pragma once

#include <cstdlib>

namespace epcomm::kernels {

// The positive integer in environment variable `name`, or 0 when it is unset or not positive.
// Callers read it once (a function-local static).
inline int env_override(const char* name) {
  const char* v = std::getenv(name);
  const int n = v != nullptr ? std::atoi(v) : 0;
  return n > 0 ? n : 0;
}

}  // namespace epcomm::kernels
