// How the normal dispatch and combine launchers configure a launch from the world size, the SM
// count and the row size, each choice with the measurement behind it (docs/perf.md). Pure
// functions of their arguments (no CUDA, no environment), so the CPU tests pin the table; the
// launchers read the environment's knobs once and pass them in.
#pragma once

#include <cstdint>

#include "kernels/launch_knobs.h"

namespace epcomm::kernels {

// A knob from the environment that forces a measured on/off choice either way.
enum class Force { kMeasured, kOff, kOn };

inline bool choose(Force force, bool measured) {
  return force == Force::kOn || (force != Force::kOff && measured);
}

struct DispatchKnobs {
  int send_warps = 0;                         // EPCOMM_DISPATCH_SEND_WARPS (0: measured)
  int token_batch = 0;                        // EPCOMM_DISPATCH_TOKEN_BATCH (0: measured)
  Force dynamic = Force::kMeasured;           // EPCOMM_DISPATCH_DYNAMIC=0|1
  Force recv_interleaved = Force::kMeasured;  // EPCOMM_DISPATCH_RECV_ORDER=slot|interleaved
};

struct DispatchPolicy {
  SenderSplit split;      // sender warps of warps_per_block, tokens per tag release (or chunk)
  bool dynamic_senders;   // senders take chunks of tokens from a counter (v16)
  bool recv_interleaved;  // receivers take the sources' rows interleaved (v11)
};

// num_tokens: the tokens this rank sends (its x rows).
inline DispatchPolicy dispatch_policy(int32_t num_ranks, int num_sms, int64_t row_bytes,
                                      int64_t num_tokens, const DispatchKnobs& knobs,
                                      int warps_per_block) {
  const bool bf16_sized = row_bytes > 8192;
  const int64_t tokens_per_sm = num_sms > 0 ? num_tokens / num_sms : num_tokens;
  // FP8 rows from two peers at 20-27 SMs with 128 or more tokens per SM: from the counter (v22).
  const bool fp8_counter =
      num_ranks > 2 && num_sms >= 20 && num_sms < 28 && !bf16_sized && tokens_per_sm >= 128;
  SenderSplit measured;
  if (num_ranks <= 2) {
    // One peer: 4 tokens per release; 9 senders at 20 or more SMs (NVLink is near saturation,
    // so more senders only contend), 11 below (v10c, 2 x H200: 24 SMs BF16 216.9 / 228.8 /
    // 242.9 us for 9 / 10 / 11; 12 SMs 347.1 / 338.5 / 335.8).
    measured = {num_sms >= 20 ? 9 : 11, 4};
  } else if (num_sms >= 20 && num_sms < 28) {
    // Two or more peers, 20-27 SMs, with the receivers interleaved (v12, 4 x H200, 24 SMs, three
    // runs in two calls: 4 senders, 4 tokens per release, BF16 561-571 us, FP8 319-321 us,
    // against 593-609 us and 332-338 us for the splits below). With senders taking tokens from
    // a counter (BF16-sized rows, v16): 5 senders, 4 tokens per chunk, 508 us against 523 us
    // for 4. FP8 rows: 4 senders, 8 tokens per release, 311 us against 317 us for 4 (v16).
    measured = bf16_sized ? SenderSplit{5, 4} : SenderSplit{4, 8};
    // FP8 rows with 128 or more tokens per SM: 5 senders taking chunks of 8 tokens from the
    // counter (v22, 4 x H200, 24 SMs, 4096 tokens: 299 us against 310 for the static 4 with 8;
    // 4 senders with chunks of 8 or 16: 335 / 346 us). Fewer tokens: 8-token chunks would leave
    // warps idle; not measured there.
    if (fp8_counter) measured = {5, 8};
  } else if (num_sms >= 20 && bf16_sized) {
    // Two or more peers, BF16-sized rows, 28+ SMs: most rows arrive from others and the
    // copy-out needs the warps: 6 senders, 1 token per release (v10d; v12, 4 x H200, 32 SMs:
    // 561 us against 588-631 us for 3-6 senders with 4 or 8 tokens per release; v16 with
    // chunks from the counter: 507 us against 548 / 570 us for 5 / 6 senders with 4).
    measured = {6, 1};
  } else {
    // Two or more peers otherwise (FP8 rows at 28+ SMs, or fewer than 20 SMs): 8 senders,
    // 4 tokens per release (v10d; v12, 4 x H200, interleaved receivers: 16 SMs BF16 574 us,
    // FP8 325 us, against 600-837 and 351-573 for 3-6 senders; 12 SMs 687 / 405 us; v16 at
    // 16 SMs with chunks from the counter: 546 us against 583 us for 6 senders).
    measured = {8, 4};
  }
  if (num_ranks > 2 && bf16_sized && num_sms < 28) {
    // Few tokens per SM (two or more peers, BF16-sized rows): each sender warp has only a few
    // chunks, sent one after another, so the per-warp chain sets the time (v19). Below 64 tokens
    // per SM: 8 senders, 1 token per chunk (4 x H200, 24 SMs: 512 tokens 89-92 us against 117-121
    // for 5 with 4, 1024 tokens 150-153 against 174-177; 12 SMs, 512 tokens: 111 against 137).
    // Below 128 per SM: at most 2 per chunk (12 SMs, 1024 tokens: 193 against 207 us; 24 SMs,
    // 2048 tokens: 276 against 279).
    if (tokens_per_sm < 64) {
      measured = {measured.send_warps > 8 ? measured.send_warps : 8, 1};
    } else if (tokens_per_sm < 128 && measured.batch > 2) {
      measured.batch = 2;
    }
  }
  if (num_ranks <= 2 && bf16_sized && num_sms >= 20 && tokens_per_sm < 64) {
    // One peer, few tokens per SM: 12 senders, 1 token per chunk (2 x H200, 24 SMs, 50
    // iterations: 512 tokens 49.6 us against 51.9 for 9 with 4; 1024 tokens 70.7 against 82.4,
    // NCCL 77.5 in that run's sweep). Not measured below 20 SMs.
    measured = {12, 1};
  }
  DispatchPolicy policy;
  policy.split = with_overrides(measured, knobs.send_warps, knobs.token_batch, warps_per_block);
  // Senders take chunks of tokens from a counter for BF16-sized rows (v16, 4 x H200, 4 ranks:
  // 578 -> 517 us at 24 SMs, 554 -> 507 at 32, 567 -> 546 at 16, 1001 -> 990 at 8, 12 the
  // same; 2 ranks 216 -> 213 us at 24 SMs), except with one peer below 20 SMs (2 ranks, 12 SMs:
  // 342 -> 347 us). FP8 rows keep every n-th token (with 4 tokens per chunk: 24 SMs 318 -> 323
  // us, 2 ranks 127 -> 132), except with two or more peers at 20-27 SMs and 128 or more tokens
  // per SM, in chunks of 8 (v22).
  const bool one_peer_few_sms = num_ranks <= 2 && num_sms < 20;
  policy.dynamic_senders = choose(knobs.dynamic, (bf16_sized && !one_peer_few_sms) || fp8_counter);
  // Receivers take the k-th row of every source before the (k+1)-th with two or more peers
  // (v11, 4 x H200, 24 SMs: BF16 670 -> 589 us, FP8 379 -> 333 us; 12 SMs BF16 824 -> 685 us),
  // and rows in slot order with one peer, where the orders are alike (2 ranks, 12 SMs, BF16:
  // 339 us slot, 344 us interleaved).
  policy.recv_interleaved = choose(knobs.recv_interleaved, num_ranks > 2);
  return policy;
}

struct CombineKnobs {
  int send_warps = 0;               // EPCOMM_COMBINE_SEND_WARPS (0: measured)
  int row_batch = 0;                // EPCOMM_COMBINE_ROW_BATCH (0: measured)
  Force join = Force::kMeasured;    // EPCOMM_COMBINE_JOIN=0|1
  bool prefetch_off = false;        // EPCOMM_COMBINE_PREFETCH=0
  Force staged = Force::kMeasured;  // EPCOMM_COMBINE_STAGED=0|1
  Force copy = Force::kMeasured;    // EPCOMM_COMBINE_COPY=0|1
  int copy_chunks = 0;              // EPCOMM_COMBINE_COPY_CHUNKS (0: measured)
};

struct CombinePolicy {
  SenderSplit split;   // sender warps of warps_per_block, rows per tag release
  bool join_reduce;    // senders reduce too once their rows are sent (v16)
  bool prefetch_next;  // reducers prefetch the next token's rows to L2 (v13)
  bool staged_sends;   // senders' rows through shared memory by bulk copies (v21), where they fit
};

// staged_possible: the stages of the staged split fit in shared memory (the launcher asks again
// with false when they do not, and gets the register path's split).
inline CombinePolicy combine_policy(int32_t num_ranks, int num_sms, const CombineKnobs& knobs,
                                    int warps_per_block, bool staged_possible = true) {
  // Senders' rows through shared memory by bulk copies with two or more peers (v21, 4 x H200,
  // 4 ranks: 24 SMs 577 -> 545 us with 5 senders, 556 with 4, 582-586 with 6, 635 with 7; 12 SMs
  // 765 -> 648 us with 6 senders joining the reduce). Not with one peer: 237 -> 315 us.
  const bool staged = staged_possible && choose(knobs.staged, num_ranks > 2);
  SenderSplit measured;
  if (staged) {
    // 5 senders at 20+ SMs, 6 below (they then join the reduce), 3 rows per release (v21).
    measured = {num_sms >= 20 ? 5 : 6, 3};
  } else if (num_ranks <= 2 || num_sms >= 20) {
    // One peer: 6 senders of 16 (8: same, 10: -26 %), 3 rows per release (v10c, 2 x H200:
    // 24 SMs 253.2 / 246.6 / 248.3 us for 2 / 3 / 4; 12 SMs 398.4 / 401.0 / 405.6). Three or
    // more peers at 20+ SMs: the same (v10d, 4 x H200, 24 SMs: 593.7 us against 622.4 for 10
    // senders unbatched, 654.6 / 662.6 for 10 senders with 2 / 3; v16: 7 senders 608.9 us
    // against 579.7).
    measured = {6, 3};
  } else {
    // Three or more peers, fewer SMs, where the senders join the reduce (below): 8 senders,
    // 3 rows per release (v16, 4 x H200, 12 SMs: 782 us against 810 us for 10 with 1, and 886
    // for 12; against 10 with 1 and no join: 766 / 804 us at 12 SMs, 624 / 727 at 16, 1093 /
    // 1259 at 8). Before the join: 10 with 1 (v10d: 860.0 us; 6 with 3 951.9).
    measured = {8, 3};
  }
  CombinePolicy policy;
  policy.split = with_overrides(measured, knobs.send_warps, knobs.row_batch, warps_per_block);
  // Sender warps reduce too once their rows are sent, with three or more peers below 20 SMs
  // (v16, 4 x H200, 12 SMs: 846 -> 815 us; at 24 SMs 577 -> 582 us, at 2 ranks 233 -> 236 us).
  policy.join_reduce = choose(knobs.join, num_ranks > 2 && num_sms < 20);
  // Reducers prefetch the next token's rows (v13, 4 x H200: -3.6 % at 24 SMs, -3.9 % at 12;
  // 2 ranks -4.5 % / -3.8 %).
  policy.prefetch_next = !knobs.prefetch_off;
  policy.staged_sends = staged;
  return policy;
}

// How the copy engines take part in the combine's sends (v23): chunks per source (0: not at
// all, SM stores only; else they send every row).
struct CombineCopyPolicy {
  int chunks = 0;
};

// host_matrix: the handle carries the host copy of rank_prefix_matrix that the copies are sized
// from; weights_unit_stride: the top-k weights' rows can go as one strided copy.
inline CombineCopyPolicy combine_copy_policy(int32_t num_ranks, int num_sms, bool host_matrix,
                                             bool weights_unit_stride, const CombineKnobs& knobs) {
  CombineCopyPolicy c;
  if (!host_matrix || !weights_unit_stride || num_ranks < 2) return c;
  // One peer only (v23, 4 x H200, 2 ranks, every row by the copies: 24 SMs 234.8-239.5 -> 222 us
  // with 4 chunks (2 / 8 / 16: 247 / 228 / 256); 12 SMs 398.5 -> 283-285 us with 16 chunks
  // (4 / 8: 314-316 / 296). Three peers: 542-551 -> 800-880 us, the copies reach only ~200 GB/s
  // per GPU to three peers at once; a share of the rows by copies and the rest by SM stores is
  // slower at every share, 20-50 %: 645-777 us, and also with one peer (50-85 % by copies:
  // 258-297 us; that variant was removed after the measurement).
  if (!choose(knobs.copy, num_ranks == 2)) return c;
  c.chunks = knobs.copy_chunks > 0 ? knobs.copy_chunks : (num_sms >= 20 ? 4 : 16);
  return c;
}

// A Force from an environment variable: `off_value` -> kOff, `on_value` -> kOn, else measured.
inline Force env_force(const char* name, const char* off_value, const char* on_value) {
  if (env_is(name, off_value)) return Force::kOff;
  if (env_is(name, on_value)) return Force::kOn;
  return Force::kMeasured;
}

// The knobs, read once per process by the launchers.
inline DispatchKnobs dispatch_knobs_from_env() {
  DispatchKnobs k;
  k.send_warps = env_override("EPCOMM_DISPATCH_SEND_WARPS");
  k.token_batch = env_override("EPCOMM_DISPATCH_TOKEN_BATCH");
  k.dynamic = env_force("EPCOMM_DISPATCH_DYNAMIC", "0", "1");
  k.recv_interleaved = env_force("EPCOMM_DISPATCH_RECV_ORDER", "slot", "interleaved");
  return k;
}

inline CombineKnobs combine_knobs_from_env() {
  CombineKnobs k;
  k.send_warps = env_override("EPCOMM_COMBINE_SEND_WARPS");
  k.row_batch = env_override("EPCOMM_COMBINE_ROW_BATCH");
  k.join = env_force("EPCOMM_COMBINE_JOIN", "0", "1");
  k.prefetch_off = env_is("EPCOMM_COMBINE_PREFETCH", "0");
  k.staged = env_force("EPCOMM_COMBINE_STAGED", "0", "1");
  k.copy = env_force("EPCOMM_COMBINE_COPY", "0", "1");
  k.copy_chunks = env_override("EPCOMM_COMBINE_COPY_CHUNKS");
  return k;
}

}  // namespace epcomm::kernels
