#include "bench_normal.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <string>

#include "bench_data.h"
#include "bench_util.h"
#include "ceiling.h"
#include "core/normal_layout.h"

namespace epcomm::bench {
RankBench bench_normal(harness::RankContext& ctx, Buffer& buffer, Nccl* nccl, NcclComm comm,
                       const NormalConfig& c, uint64_t seed) {
  const int32_t R = ctx.num_ranks, me = ctx.rank, dev = buffer.device();
  const int64_t T = c.tokens, H = c.hidden, K = c.topk, G = H / 128;
  const int32_t E = c.experts;
  cudaStream_t s;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  RankBench out;

  DevMem x(T * H * 2), x8(T * H), scales(T * G * 4), topk(T * K * 8), weights(T * K * 4);
  check_cuda(fill_bench_x(x.as<uint16_t>(), T, H, seed, me, s), "fill x");
  check_cuda(cast_bench_fp8(x.as<uint16_t>(), x8.as<uint8_t>(), scales.as<float>(), T, H, s),
             "cast fp8");
  const auto idx = bench_topk(T, K, E, c.skewed, seed, me);
  std::vector<float> w(T * K, 1.0f / static_cast<float>(K));
  check_cuda(cudaMemcpy(topk.p, idx.data(), idx.size() * 8, cudaMemcpyHostToDevice), "upload topk");
  check_cuda(cudaMemcpy(weights.p, w.data(), w.size() * 4, cudaMemcpyHostToDevice),
             "upload weights");
  DevMem per_rank(R * 4), per_expert(E * 4), in_rank(T * R), rpm(R * R * 4), slot(T * R * 4);

  OpTimer timer(buffer, s, c.warmup, c.iters);
  const char* only = std::getenv("EPCOMM_BENCH_ONLY");  // one op and its setup (diagnosis)
  auto time_op = [&](const char* name, const char* dtype, double bytes, double nvlink, auto&& fn) {
    if (only != nullptr && std::string(only) != name) {
      fn();  // untimed, for its results (the layout feeds the dispatch)
      check(buffer.synchronize(s), name);
      return;
    }
    out.samples.push_back(timer.time(name, dtype, bytes, nvlink, fn));
  };

  LayoutArgs la{
      view(topk, DType::kInt64, {T, K}, dev),    E,
      view(per_rank, DType::kInt32, {R}, dev),   {},
      view(per_expert, DType::kInt32, {E}, dev), view(in_rank, DType::kBool, {T, R}, dev)};
  time_op("layout", "int64", 0, 0, [&] { check(buffer.get_dispatch_layout(la, s), "layout"); });

  DispatchHandle h{
      view(rpm, DType::kInt32, {R, R}, dev),  {}, view(in_rank, DType::kBool, {T, R}, dev),
      view(slot, DType::kInt32, {T, R}, dev), 0,  {}};
  // Host copy of rank_prefix_matrix (filled by dispatch_notify): lets the combine send its rows
  // with the copy engines (EPCOMM_COMBINE_COPY; docs/perf.md v23).
  std::vector<int32_t> rpm_host(static_cast<size_t>(R) * R);
  h.rank_prefix_matrix_host =
      TensorView::contiguous(rpm_host.data(), DType::kInt32, {R, R}, DeviceKind::kCpu);
  DispatchNotifyArgs na{
      la.num_tokens_per_rank, la.num_tokens_per_expert, la.is_token_in_rank, 1, Config{}, h};
  DispatchCounts counts;
  check(buffer.dispatch_notify(na, &counts, s), "notify");
  const int64_t N = counts.num_recv_tokens;
  std::vector<int32_t> m(R * R);
  check_cuda(cudaMemcpy(m.data(), rpm.p, m.size() * 4, cudaMemcpyDeviceToHost), "rpm");
  auto sent_to = [&](int32_t src, int32_t d) {
    return m[src * R + d] - (src > 0 ? m[(src - 1) * R + d] : 0);
  };
  int64_t sent_remote = 0, sent_total = 0;
  for (int32_t d = 0; d < R; ++d) {
    sent_total += sent_to(me, d);
    if (d != me) sent_remote += sent_to(me, d);
  }
  const double bf16_bytes = static_cast<double>(N) * H * 2;
  const double fp8_bytes = bf16_bytes * (1.0 + 4.0 / 128.0) / 2.0;
  const double remote_bf16 = static_cast<double>(sent_remote) * H * 2;

  DevMem recv_x(N * H * 2), recv_src(N * 4), recv_topk(N * K * 8), recv_w(N * K * 4),
      recv_x8(N * H), recv_sc(N * G * 4);
  h.recv_src_idx = view(recv_src, DType::kInt32, {N}, dev);
  h.num_recv_tokens = N;
  Config cfg;
  cfg.num_sms = c.sms;
  DispatchArgs full;
  full.x = view(x, DType::kBFloat16, {T, H}, dev);
  full.topk_idx = la.topk_idx;
  full.topk_weights = view(weights, DType::kFloat32, {T, K}, dev);
  full.num_tokens_per_rank = la.num_tokens_per_rank;
  full.num_tokens_per_expert = la.num_tokens_per_expert;
  full.is_token_in_rank = la.is_token_in_rank;
  full.num_experts = E;
  full.config = cfg;
  full.handle = h;
  full.recv_x = view(recv_x, DType::kBFloat16, {N, H}, dev);
  full.recv_topk_idx = view(recv_topk, DType::kInt64, {N, K}, dev);
  full.recv_topk_weights = view(recv_w, DType::kFloat32, {N, K}, dev);
  time_op("dispatch_full", "bf16", bf16_bytes, remote_bf16, [&] {
    DispatchCounts cn;
    check(buffer.dispatch_notify(na, &cn, s), "notify");
    check(buffer.dispatch(full, s), "dispatch");
  });
  DispatchArgs cached;
  cached.x = full.x;
  cached.cached = true;
  cached.config = cfg;
  cached.handle = h;
  cached.recv_x = full.recv_x;
  time_op("dispatch", "bf16", bf16_bytes, remote_bf16,
          [&] { check(buffer.dispatch(cached, s), "dispatch"); });
  DispatchArgs cached8 = cached;
  cached8.x = view(x8, DType::kFloat8E4M3, {T, H}, dev);
  cached8.x_scales = view(scales, DType::kFloat32, {T, G}, dev);
  cached8.recv_x = view(recv_x8, DType::kFloat8E4M3, {N, H}, dev);
  cached8.recv_x_scales = view(recv_sc, DType::kFloat32, {N, G}, dev);
  time_op("dispatch", "fp8", fp8_bytes, static_cast<double>(sent_remote) * (H + G * 4),
          [&] { check(buffer.dispatch(cached8, s), "dispatch fp8"); });

  // Combine the BF16 rows of the cached dispatch (recv_x holds them).
  check(buffer.dispatch(full, s), "dispatch");
  DevMem combined(T * H * 2), combined_w(T * K * 4);
  CombineArgs ca;
  ca.x = full.recv_x;
  ca.handle = h;
  ca.topk_weights = full.recv_topk_weights;
  ca.config = cfg;
  ca.combined_x = view(combined, DType::kBFloat16, {T, H}, dev);
  ca.combined_topk_weights = view(combined_w, DType::kFloat32, {T, K}, dev);
  time_op("combine", "bf16", bf16_bytes, remote_bf16,
          [&] { check(buffer.combine(ca, s), "combine"); });

  if (c.check) {
    // Dispatch: received row i is a bit-exact copy of source (s, t); rows grouped by source,
    // tokens ascending. Combine of dispatch: x times the number of destinations (exact).
    check(buffer.dispatch(full, s), "dispatch");
    check(buffer.combine(ca, s), "combine");
    check(buffer.synchronize(s), "sync");
    std::vector<uint16_t> rx(N * H), cx(T * H);
    std::vector<int32_t> src(N);
    std::vector<uint8_t> inr(T * R);
    check_cuda(cudaMemcpy(rx.data(), recv_x.p, rx.size() * 2, cudaMemcpyDeviceToHost), "d2h");
    check_cuda(cudaMemcpy(cx.data(), combined.p, cx.size() * 2, cudaMemcpyDeviceToHost), "d2h");
    check_cuda(cudaMemcpy(src.data(), recv_src.p, src.size() * 4, cudaMemcpyDeviceToHost), "d2h");
    check_cuda(cudaMemcpy(inr.data(), in_rank.p, inr.size(), cudaMemcpyDeviceToHost), "d2h");
    int64_t bad = 0, row = 0;
    for (int32_t sr = 0; sr < R; ++sr) {
      int32_t prev = -1;
      for (; row < m[sr * R + me]; ++row) {
        const int32_t t = src[row];
        bad += t <= prev;
        prev = t;
        for (int64_t hh = 0; hh < H; ++hh) bad += rx[row * H + hh] != bench_value(seed, sr, t, hh);
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      int n = 0;
      for (int32_t d = 0; d < R; ++d) n += inr[t * R + d];
      for (int64_t hh = 0; hh < H; ++hh)
        bad += cx[t * H + hh] !=
               core::float_to_bf16(core::bf16_to_float(bench_value(seed, me, t, hh)) * n);
    }
    out.check_result = bad == 0 ? "ok" : "MISMATCH (" + std::to_string(bad) + " elements)";
  }

  if (nccl && comm) {
    // Baseline: the same routed rows, already packed per destination (no permutation).
    for (int fp8 = 0; fp8 < 2; ++fp8) {
      const int64_t row_bytes = fp8 ? H + G * 4 : H * 2;
      DevMem sendbuf(sent_total * row_bytes), recvbuf(N * row_bytes);
      time_op("nccl_dispatch", fp8 ? "fp8" : "bf16", fp8 ? fp8_bytes : bf16_bytes,
              static_cast<double>(sent_remote) * row_bytes, [&] {
                nccl->group_start();
                int64_t send_off = 0;
                for (int32_t d = 0; d < R; ++d) {
                  const int64_t n_out = sent_to(me, d), n_in = sent_to(d, me);
                  const int64_t recv_off = d > 0 ? m[(d - 1) * R + me] : 0;
                  if (n_out)
                    nccl->send(sendbuf.as<uint8_t>() + send_off * row_bytes, n_out * row_bytes,
                               kNcclUint8, d, comm, s);
                  if (n_in)
                    nccl->recv(recvbuf.as<uint8_t>() + recv_off * row_bytes, n_in * row_bytes,
                               kNcclUint8, d, comm, s);
                  send_off += n_out;
                }
                nccl->group_end();
              });
    }
  }

  // Ceiling: push exactly the remote BF16 bytes of the dispatch with the same SM count.
  std::vector<uint8_t*> dst(R);
  std::vector<int64_t> bytes_to(R, 0);
  for (int32_t d = 0; d < R; ++d) {
    dst[d] = static_cast<uint8_t*>(buffer.peer_region(d, false));
    if (d != me) bytes_to[d] = static_cast<int64_t>(sent_to(me, d)) * H * 2;
  }
  DevMem dst_dev(R * sizeof(uint8_t*)), bytes_dev(R * 8);
  check_cuda(cudaMemcpy(dst_dev.p, dst.data(), R * sizeof(uint8_t*), cudaMemcpyHostToDevice),
             "h2d");
  check_cuda(cudaMemcpy(bytes_dev.p, bytes_to.data(), R * 8, cudaMemcpyHostToDevice), "h2d");
  PushParams pp{x.as<uint8_t>(), dst_dev.as<uint8_t*>(), bytes_dev.as<int64_t>(), R, me};
  time_op("ceiling", "bf16", bf16_bytes, remote_bf16,
          [&] { check_cuda(launch_push(pp, c.sms, s), "push"); });

  cudaStreamDestroy(s);
  return out;
}

}  // namespace epcomm::bench
