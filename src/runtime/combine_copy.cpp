#include "runtime/combine_copy.h"

#include <algorithm>
#include <string>

#include "kernels/combine_copy_start.h"
#include "runtime/buffer_impl.h"
#include "runtime/cuda_check.h"

namespace epcomm::runtime {
namespace {

// One non-blocking stream and one join event per peer, and the fork event (first use only).
Error ensure_copy_streams(Buffer::Impl& impl) {
  const auto R = static_cast<size_t>(impl.topo.num_ranks);
  if (impl.copy_fork != nullptr) return Error::success();
  impl.copy_streams.assign(R, nullptr);
  impl.copy_joins.assign(R, nullptr);
  for (size_t d = 0; d < R; ++d) {
    if (static_cast<int32_t>(d) == impl.topo.rank) continue;
    if (auto e = cuda_error(cudaStreamCreateWithFlags(&impl.copy_streams[d], cudaStreamNonBlocking),
                            "cudaStreamCreateWithFlags of a copy stream");
        !e.ok())
      return e;
    if (auto e = cuda_error(cudaEventCreateWithFlags(&impl.copy_joins[d], cudaEventDisableTiming),
                            "cudaEventCreateWithFlags of a copy event");
        !e.ok())
      return e;
  }
  return cuda_error(cudaEventCreateWithFlags(&impl.copy_fork, cudaEventDisableTiming),
                    "cudaEventCreateWithFlags of the copy fork event");
}

// `rows` rows of `row_bytes` from `src` (row stride `src_stride`) to `dst` (packed).
cudaError_t copy_rows(uint8_t* dst, const uint8_t* src, int64_t src_stride, int64_t row_bytes,
                      int64_t rows, cudaStream_t s) {
  if (src_stride == row_bytes)
    return cudaMemcpyAsync(dst, src, static_cast<size_t>(rows * row_bytes), cudaMemcpyDefault, s);
  return cudaMemcpy2DAsync(dst, static_cast<size_t>(row_bytes), src,
                           static_cast<size_t>(src_stride), static_cast<size_t>(row_bytes),
                           static_cast<size_t>(rows), cudaMemcpyDefault, s);
}

}  // namespace

Error combine_by_copy_engines(Buffer::Impl& impl, const CombineArgs& args, kernels::CombineParams p,
                              int chunks, int num_sms, cudaStream_t stream) {
  const char* op = "combine";
  const int32_t R = p.num_ranks, me = p.rank;
  const auto* m = static_cast<const int32_t*>(args.handle.rank_prefix_matrix_host.data);
  const auto sent = [&](int32_t src, int32_t d) { return core::sent_rows(m, R, src, d); };
  kernels::CombineCopyStartParams q{};
  q.combine = p;
  q.tag_word = impl.copy_tag;
  int64_t first[kernels::kMaxCopyRanks];  // our first receive row from rank s
  int64_t received = 0;
  for (int32_t s = 0; s < R; ++s) {
    int64_t need = 0;
    for (int32_t d = 0; d < R; ++d) {
      // A prefix matrix: no count below zero (the copies' offsets come from these sums).
      if (sent(s, d) < 0)
        return Error(ErrorCode::kInvalidArgument,
                     std::string(op) +
                         ": handle.rank_prefix_matrix_host: expected columns that "
                         "never decrease, got " +
                         std::to_string(m[s * R + d]) + " at [" + std::to_string(s) + ", " +
                         std::to_string(d) + "] after " +
                         std::to_string(s > 0 ? m[(s - 1) * R + d] : 0));
      if (d < me) q.base_at[s] += sent(s, d);
      need += sent(s, d);
    }
    // Every rank reaches the same verdict from the same matrix.
    if (need > p.area.capacity)
      return Error(ErrorCode::kBufferTooSmall,
                   std::string(op) + ": num_nvl_bytes: rank " + std::to_string(s) + " gets " +
                       std::to_string(need) + " rows back but the combine area holds " +
                       std::to_string(p.area.capacity) + " rows");
    q.rows_from[s] = sent(s, me);
    first[s] = received;
    received += q.rows_from[s];
  }
  const int64_t N = args.x.shape[0];
  if (received > N || received != args.handle.num_recv_tokens)
    return Error(ErrorCode::kInvalidArgument,
                 std::string(op) + ": handle.rank_prefix_matrix_host: expected " +
                     std::to_string(args.handle.num_recv_tokens) +
                     " received rows (handle.num_recv_tokens, at most the " + std::to_string(N) +
                     " rows of x), the matrix says " + std::to_string(received));
  if (auto e = ensure_copy_streams(impl); !e.ok()) return e;
  if (auto e = cuda_error(kernels::launch_combine_copy_start(q, stream),
                          "combine copy-start kernel launch");
      !e.ok())
    return e;
  if (auto e = cuda_error(cudaEventRecord(impl.copy_fork, stream), "cudaEventRecord (copy fork)");
      !e.ok())
    return e;
  const core::NormalArea& a = p.area;
  const int32_t K = a.topk;
  // Per peer d: the weights first, then chunk c of the rows and its tag; chunk c of every peer
  // before chunk c + 1 of any, so the peers' copy engines start together.
  const auto copied = [&](int32_t d) { return int64_t{q.rows_from[d]}; };
  const auto chunk_rows = [&](int32_t d) { return kernels::copy_chunk_rows(copied(d), chunks); };
  p.copy_chunks = chunks;
  for (int c = 0; c < chunks; ++c) {  // chunks >= 1 (combine_copy_policy)
    for (int32_t d = 0; d < R; ++d) {
      const int64_t rows = copied(d);
      if (d == me || rows == 0) continue;
      const int64_t lo = int64_t{c} * chunk_rows(d), hi = std::min(rows, lo + chunk_rows(d));
      if (lo >= hi) continue;
      const cudaStream_t cs = impl.copy_streams[d];
      uint8_t* area = impl.peer_bases[d] + p.area_offset;
      cudaError_t st = cudaSuccess;
      if (c == 0) {
        st = cudaStreamWaitEvent(cs, impl.copy_fork, 0);
        if (st == cudaSuccess && K > 0)  // [rows, K] float32, source rows weights_stride apart
          st = cudaMemcpy2DAsync(
              area + a.topk_weights_offset + int64_t{q.base_at[d]} * K * 4,
              static_cast<size_t>(K) * 4, p.topk_weights + first[d] * p.weights_stride,
              static_cast<size_t>(p.weights_stride) * 4, static_cast<size_t>(K) * 4,
              static_cast<size_t>(rows), cudaMemcpyDefault, cs);
      }
      if (st == cudaSuccess)
        st = copy_rows(area + a.x_offset + (q.base_at[d] + lo) * a.row_bytes,
                       p.x + (first[d] + lo) * p.x_stride, p.x_stride, a.row_bytes, hi - lo, cs);
      // The chunk's tag after its rows: the copy starts once the rows' copy completed.
      if (st == cudaSuccess)
        st = cudaMemcpyAsync(area + a.tag_offset + (q.base_at[d] + lo) * 4, impl.copy_tag, 4,
                             cudaMemcpyDefault, cs);
      if (st == cudaSuccess && hi == rows) st = cudaEventRecord(impl.copy_joins[d], cs);
      if (auto e = cuda_error(st, "combine copy to rank " + std::to_string(d)); !e.ok()) return e;
    }
    if (c == 0) {  // the reducers wait from here on; the first chunks are under way
      if (auto e = cuda_error(kernels::launch_intranode_combine(p, num_sms, stream),
                              "combine kernel launch");
          !e.ok())
        return e;
    }
  }
  // Join: work after the combine on `stream` (a reuse of x, the next combine) follows the copies.
  for (int32_t d = 0; d < R; ++d)
    if (d != me && copied(d) > 0)
      if (auto e = cuda_error(cudaStreamWaitEvent(stream, impl.copy_joins[d], 0),
                              "cudaStreamWaitEvent (copy join)");
          !e.ok())
        return e;
  return Error::success();
}

}  // namespace epcomm::runtime
