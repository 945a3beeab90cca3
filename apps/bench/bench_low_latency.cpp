#include "bench_low_latency.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_data.h"
#include "bench_util.h"
#include "ceiling.h"

namespace epcomm::bench {

RankBench bench_low_latency(harness::RankContext& ctx, Buffer& buffer, Nccl* nccl, NcclComm comm,
                            const LowLatencyConfig& c, uint64_t seed) {
  const int32_t R = ctx.num_ranks, me = ctx.rank, dev = buffer.device();
  const int64_t T = c.tokens, H = c.hidden, K = c.topk, G = H / 128;
  const int32_t E = c.experts, E_local = E / R, N_max = static_cast<int32_t>(T);
  const int64_t rows = int64_t{R} * N_max;
  cudaStream_t s;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  RankBench out;

  DevMem x(T * H * 2), topk(T * K * 8), weights(T * K * 4);
  check_cuda(fill_bench_x(x.as<uint16_t>(), T, H, seed, me, s), "fill x");
  const auto idx = bench_topk(T, K, E, false, seed, me);
  std::vector<float> w(T * K, 1.0f / static_cast<float>(K));
  check_cuda(cudaMemcpy(topk.p, idx.data(), idx.size() * 8, cudaMemcpyHostToDevice), "upload topk");
  check_cuda(cudaMemcpy(weights.p, w.data(), w.size() * 4, cudaMemcpyHostToDevice),
             "upload weights");
  const int64_t recv_row_bytes = c.fp8 ? H : H * 2;
  DevMem recv_x(E_local * rows * recv_row_bytes), recv_sc(E_local * rows * G * 4),
      recv_count(E_local * 4), src_info(E_local * rows * 4), range(E_local * R * 8),
      expert_out(E_local * rows * H * 2), combined(T * H * 2);
  check_cuda(cudaMemsetAsync(expert_out.p, 0, E_local * rows * H * 2, s), "memset");

  LowLatencyDispatchArgs d;
  d.x = view(x, DType::kBFloat16, {T, H}, dev);
  d.topk_idx = view(topk, DType::kInt64, {T, K}, dev);
  d.num_max_dispatch_tokens_per_rank = N_max;
  d.num_experts = E;
  d.use_fp8 = c.fp8;
  d.packed_recv_x =
      view(recv_x, c.fp8 ? DType::kFloat8E4M3 : DType::kBFloat16, {E_local, rows, H}, dev);
  if (c.fp8)
    d.packed_recv_x_scales = TensorView::strided(recv_sc.p, DType::kFloat32, {E_local, rows, G},
                                                 {rows * G, 1, rows}, DeviceKind::kCuda, dev);
  d.packed_recv_count = view(recv_count, DType::kInt32, {E_local}, dev);
  d.handle = LowLatencyHandle{view(src_info, DType::kInt32, {E_local, rows}, dev),
                              view(range, DType::kInt64, {E_local, R}, dev), N_max,
                              static_cast<int32_t>(H), E};
  LowLatencyCombineArgs cb;
  cb.x = view(expert_out, DType::kBFloat16, {E_local, rows, H}, dev);
  cb.topk_idx = d.topk_idx;
  cb.topk_weights = view(weights, DType::kFloat32, {T, K}, dev);
  cb.handle = d.handle;
  cb.out = view(combined, DType::kBFloat16, {T, H}, dev);

  // Selections this rank receives (DeepEP's byte accounting), from one dispatch.
  LowLatencyHook hook;
  check(buffer.low_latency_dispatch(d, s, &hook), "ll dispatch");
  check(buffer.synchronize(s), "ll dispatch");
  std::vector<int32_t> counts(E_local);
  check_cuda(cudaMemcpy(counts.data(), recv_count.p, E_local * 4, cudaMemcpyDeviceToHost), "d2h");
  int64_t selections = 0;
  for (int32_t n : counts) selections += n;
  const double dispatch_bytes =
      static_cast<double>(selections) * (c.fp8 ? static_cast<double>(H + G * 4 + 16) : H * 2.0);
  const double combine_bytes = static_cast<double>(selections) * H * 2.0;
  const char* dtype = c.fp8 ? "fp8" : "bf16";

  // Inputs are not served from L2: 256 MB written before every call.
  OpTimer timer(buffer, s, c.warmup, c.iters, size_t{256} << 20);
  auto no_op = [] {};
  out.samples.push_back(timer.time("ll_dispatch", dtype, dispatch_bytes, 0, [&] {
    check(buffer.low_latency_dispatch(d, s, &hook), "ll dispatch");
  }));
  out.samples.push_back(timer.time("ll_combine", "bf16", combine_bytes, 0, [&] {
    check(buffer.low_latency_combine(cb, s, &hook), "ll combine");
  }));
  // The same calls timed as DeepEP's figures are: the kernels' own durations (CUPTI).
  std::string no_kernel_times;
  auto kernel_time = [&](const char* op, const char* dt, double bytes,
                         const std::vector<std::string>& parts, auto&& fn) {
    Sample k;
    if (no_kernel_times.empty() &&
        timer.time_kernels(op, dt, bytes, parts, fn, &k, &no_kernel_times))
      out.samples.push_back(k);
    else if (me == 0 && !no_kernel_times.empty())
      std::fprintf(stderr, "epcomm_bench: %s not measured: %s\n", op, no_kernel_times.c_str());
  };
  kernel_time("ll_dispatch_kernel", dtype, dispatch_bytes, {"LowLatencyDispatchParams"},
              [&] { check(buffer.low_latency_dispatch(d, s, &hook), "ll dispatch"); });
  kernel_time("ll_combine_kernel", "bf16", combine_bytes, {"LowLatencyCombineParams"},
              [&] { check(buffer.low_latency_combine(cb, s, &hook), "ll combine"); });
  // Hook mode: the send alone; then the receive alone, after a barrier that guarantees every
  // rank's sends have finished (so it measures the receive, not waiting for data).
  LowLatencyDispatchArgs dh = d;
  dh.return_recv_hook = true;
  LowLatencyCombineArgs ch = cb;
  ch.return_recv_hook = true;
  out.samples.push_back(timer.time(
      "ll_dispatch_send", dtype, dispatch_bytes, 0, no_op,
      [&] { check(buffer.low_latency_dispatch(dh, s, &hook), "ll dispatch send"); },
      [&] { check(buffer.run_low_latency_hook(hook, s), "ll dispatch hook"); }));
  out.samples.push_back(timer.time(
      "ll_dispatch_recv", dtype, dispatch_bytes, 0,
      [&] {
        check(buffer.low_latency_dispatch(dh, s, &hook), "ll dispatch send");
        check(buffer.barrier(s), "barrier");
      },
      [&] { check(buffer.run_low_latency_hook(hook, s), "ll dispatch hook"); }, no_op));
  out.samples.push_back(timer.time(
      "ll_combine_send", "bf16", combine_bytes, 0, no_op,
      [&] { check(buffer.low_latency_combine(ch, s, &hook), "ll combine send"); },
      [&] { check(buffer.run_low_latency_hook(hook, s), "ll combine hook"); }));
  out.samples.push_back(timer.time(
      "ll_combine_recv", "bf16", combine_bytes, 0,
      [&] {
        check(buffer.low_latency_combine(ch, s, &hook), "ll combine send");
        check(buffer.barrier(s), "barrier");
      },
      [&] { check(buffer.run_low_latency_hook(hook, s), "ll combine hook"); }, no_op));

  // Hook-mode overlap: a computation on every SM between the send and the receive. The transfer
  // overlaps when send + compute + receive takes about compute + receive, not compute + dispatch.
  {
    int sms = 0;
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "attribute");
    DevMem sink(4);
    const int iters = 20000;
    out.samples.push_back(timer.time("ll_overlap_compute", "-", 0, 0, [&] {
      check_cuda(launch_busy(sink.as<float>(), iters, sms, s), "busy");
    }));
    out.samples.push_back(timer.time("ll_overlap_send_compute_recv", dtype, dispatch_bytes, 0, [&] {
      check(buffer.low_latency_dispatch(dh, s, &hook), "ll dispatch send");
      check_cuda(launch_busy(sink.as<float>(), iters, sms, s), "busy");
      check(buffer.run_low_latency_hook(hook, s), "ll dispatch hook");
    }));
  }

  if (nccl && comm) {
    // Baseline: each token's row once to every rank that holds one of its experts, packed per
    // destination, and the same rows back as BF16 (the reduction over local experts excluded).
    std::vector<int64_t> to(R, 0);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<bool> hit(R, false);
      for (int64_t k = 0; k < K; ++k)
        if (idx[t * K + k] >= 0) hit[idx[t * K + k] / E_local] = true;
      for (int32_t r = 0; r < R; ++r) to[r] += hit[r];
    }
    std::vector<int64_t> from(R * R);
    ctx.all_gather(to.data(), from.data(), R * sizeof(int64_t));  // from[src * R + dst]
    for (int back = 0; back < 2; ++back) {
      const int64_t row_bytes = back ? H * 2 : (c.fp8 ? H + G * 4 : H * 2);
      int64_t total_out = 0, total_in = 0;
      for (int32_t r = 0; r < R; ++r) {
        total_out += back ? from[r * R + me] : to[r];
        total_in += back ? to[r] : from[r * R + me];
      }
      DevMem sendbuf(total_out * row_bytes), recvbuf(total_in * row_bytes);
      auto exchange = [&] {
        nccl->group_start();
        int64_t so = 0, ro = 0;
        for (int32_t r = 0; r < R; ++r) {
          const int64_t n_out = back ? from[r * R + me] : to[r];
          const int64_t n_in = back ? to[r] : from[r * R + me];
          if (n_out)
            nccl->send(sendbuf.as<uint8_t>() + so * row_bytes, n_out * row_bytes, kNcclUint8, r,
                       comm, s);
          if (n_in)
            nccl->recv(recvbuf.as<uint8_t>() + ro * row_bytes, n_in * row_bytes, kNcclUint8, r,
                       comm, s);
          so += n_out;
          ro += n_in;
        }
        nccl->group_end();
      };
      const double bytes = back ? combine_bytes : dispatch_bytes;
      const char* dt = back ? "bf16" : dtype;
      out.samples.push_back(
          timer.time(back ? "nccl_ll_combine" : "nccl_ll_dispatch", dt, bytes, 0, exchange));
      kernel_time(back ? "nccl_ll_combine_kernel" : "nccl_ll_dispatch_kernel", dt, bytes, {"nccl"},
                  exchange);
    }
  }
  // Ceiling: the combine's remote rows (the selections received from each source, BF16) pushed
  // to their sources by every SM, as one contiguous block per peer.
  {
    std::vector<int64_t> ranges(E_local * R);
    check_cuda(cudaMemcpy(ranges.data(), range.p, ranges.size() * 8, cudaMemcpyDeviceToHost),
               "d2h");
    std::vector<uint8_t*> dst(R);
    std::vector<int64_t> bytes_to(R, 0);
    for (int32_t r = 0; r < R; ++r) {
      dst[r] = static_cast<uint8_t*>(buffer.peer_region(r, false));
      for (int32_t j = 0; j < E_local && r != me; ++j)
        bytes_to[r] += (ranges[j * R + r] & 0xffffffff) * H * 2;
    }
    int sms = 0;
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "attribute");
    DevMem dst_dev(R * sizeof(uint8_t*)), bytes_dev(R * 8);
    check_cuda(cudaMemcpy(dst_dev.p, dst.data(), R * sizeof(uint8_t*), cudaMemcpyHostToDevice),
               "h2d");
    check_cuda(cudaMemcpy(bytes_dev.p, bytes_to.data(), R * 8, cudaMemcpyHostToDevice), "h2d");
    PushParams pp{expert_out.as<uint8_t>(), dst_dev.as<uint8_t*>(), bytes_dev.as<int64_t>(), R, me};
    const auto push = [&] { check_cuda(launch_push(pp, sms, s), "push"); };
    out.samples.push_back(timer.time("ceiling_ll_combine", "bf16", combine_bytes, 0, push));
    kernel_time("ceiling_ll_combine_kernel", "bf16", combine_bytes, {"push_kernel"}, push);
  }
  check(buffer.synchronize(s), "ll bench");
  cudaStreamDestroy(s);
  return out;
}

}  // namespace epcomm::bench
