#include "core/error_record.h"

namespace epcomm::core {

const char* op_name(OpId op) {
  switch (op) {
    case OpId::kNone:
      return "none";
    case OpId::kBarrier:
      return "barrier";
    case OpId::kLayout:
      return "get_dispatch_layout";
    case OpId::kDispatchNotify:
      return "dispatch_notify";
    case OpId::kDispatch:
      return "dispatch";
    case OpId::kCombine:
      return "combine";
    case OpId::kLowLatencyDispatch:
      return "low_latency_dispatch";
    case OpId::kLowLatencyCombine:
      return "low_latency_combine";
  }
  return "unknown op";
}

const char* stage_name(WaitStage stage) {
  switch (stage) {
    case WaitStage::kNone:
      return "none";
    case WaitStage::kBarrierFlag:
      return "barrier flag";
    case WaitStage::kCountExchange:
      return "count exchange";
    case WaitStage::kDataArrival:
      return "data arrival";
    case WaitStage::kCompletion:
      return "completion";
    case WaitStage::kInvalidExpertId:
      return "invalid expert id";
    case WaitStage::kBufferTooSmall:
      return "buffer too small";
    case WaitStage::kArgumentMismatch:
      return "argument mismatch";
    case WaitStage::kTooManyTokens:
      return "more rows than num_worst_tokens";
    case WaitStage::kHostMatrixMismatch:
      return "host rank_prefix_matrix mismatch";
    case WaitStage::kRoutingMismatch:
      return "routing differs from the dispatch's";
  }
  return "unknown stage";
}

}  // namespace epcomm::core
