// epcomm::Error: the result of every public operation. No exception leaves the library;
// every entry point returns an Error whose message names the argument, the expected and the
// actual value (semantics.md section 7).
#pragma once

#include <string>
#include <utility>

#include "epcomm/export.h"

namespace epcomm {

enum class ErrorCode : int {
  kSuccess = 0,
  kInvalidArgument = 1,  // a caller error detected before anything was launched
  kNotImplemented = 2,   // the operation exists in the API but is not implemented yet
  kNotSupported = 3,     // a configuration epcomm does not support yet (multi-node, ...)
  kCudaError = 4,        // a CUDA runtime call failed
  kTimeout = 5,          // a cross-rank wait expired; the message names who waited for whom
  kBootstrap = 6,        // the all-gather or the cross-rank consistency check failed
  kBufferTooSmall = 7,   // the communication buffer is smaller than the operation needs
  kFailedState = 8,      // the Buffer failed earlier (timeout, abort) and cannot be used
  kInternal = 9,         // a bug in epcomm
};

// Stable name of a code ("invalid_argument", ...).
EPCOMM_EXPORT const char* error_code_name(ErrorCode code);

class [[nodiscard]] EPCOMM_EXPORT Error {
 public:
  Error() = default;  // success
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Error success() { return Error(); }
  bool ok() const { return code_ == ErrorCode::kSuccess; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: topk_idx: expected dtype int64 or int32, got float32"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kSuccess;
  std::string message_;
};

}  // namespace epcomm
