// epcomm_demo: the main job until the benchmark exists.
//  1. Runs layout, dispatch and combine (normal and low-latency) through the CPU reference on a
//     simulated world and checks what it can prove (combine of dispatch = x times the number of
//     destinations; every row arrives once).
//  2. Where GPUs exist, starts one process per GPU, creates a Buffer on each, and checks that
//     every rank can write every peer's buffer over NVLink/P2P and pass barriers.
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/numeric.h"
#include "core/reference/host_tensor.h"
#include "core/reference/sim_world.h"
#include "epcomm/epcomm.hpp"
#include "harness/launcher.h"

using epcomm::DType;
using epcomm::Error;
using epcomm::reference::HostTensor;

namespace {

struct SimResult {
  bool ok = true;
  int64_t rows = 0, selections = 0;
};

// Normal and low-latency round trips through the reference on R simulated ranks.
SimResult simulate(int R, int64_t T, int64_t H, int64_t K, int32_t E) {
  SimResult res;
  epcomm::reference::SimWorld world(R);
  std::vector<HostTensor> x, topk, w, per_rank, per_expert, in_rank, rpm, src, in_copy, slot, recv,
      recv_idx, recv_w;
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  for (int r = 0; r < R; ++r) {
    x.emplace_back(DType::kBFloat16, std::vector<int64_t>{T, H});
    topk.emplace_back(DType::kInt64, std::vector<int64_t>{T, K});
    w.emplace_back(DType::kFloat32, std::vector<int64_t>{T, K});
    for (int64_t i = 0; i < T * H; ++i)
      x[r].data<uint16_t>()[i] =
          epcomm::core::float_to_bf16(static_cast<float>(next() % 2001) / 500.0f - 2.0f);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t first = next() % E;
      for (int64_t k = 0; k < K; ++k) {
        topk[r].at<int64_t>({t, k}) = (first + k * (E / K)) % E;  // K distinct experts
        w[r].at<float>({t, k}) = 1.0f / K;
      }
    }
    per_rank.emplace_back(DType::kInt32, std::vector<int64_t>{R});
    per_expert.emplace_back(DType::kInt32, std::vector<int64_t>{E});
    in_rank.emplace_back(DType::kBool, std::vector<int64_t>{T, R});
    epcomm::LayoutArgs la{topk[r].view(),   E, per_rank[r].view(), {}, per_expert[r].view(),
                          in_rank[r].view()};
    if (Error e = world.get_dispatch_layout(r, la); !e.ok()) {
      std::printf("layout failed: %s\n", e.to_string().c_str());
      res.ok = false;
      return res;
    }
    rpm.emplace_back(DType::kInt32, std::vector<int64_t>{R, R});
    in_copy.emplace_back(DType::kBool, std::vector<int64_t>{T, R});
    slot.emplace_back(DType::kInt32, std::vector<int64_t>{T, R});
  }
  std::vector<epcomm::DispatchNotifyArgs> notify(R);
  for (int r = 0; r < R; ++r)
    notify[r] =
        epcomm::DispatchNotifyArgs{per_rank[r].view(),
                                   per_expert[r].view(),
                                   in_rank[r].view(),
                                   1,
                                   {},
                                   {rpm[r].view(), {}, in_copy[r].view(), slot[r].view(), 0}};
  std::vector<epcomm::DispatchCounts> counts;
  if (Error e = world.dispatch_notify(notify, &counts); !e.ok()) {
    std::printf("notify failed: %s\n", e.to_string().c_str());
    res.ok = false;
    return res;
  }
  std::vector<epcomm::DispatchArgs> args(R);
  for (int r = 0; r < R; ++r) {
    const int64_t N = counts[r].num_recv_tokens;
    res.rows += N;
    recv.emplace_back(DType::kBFloat16, std::vector<int64_t>{N, H});
    src.emplace_back(DType::kInt32, std::vector<int64_t>{N});
    recv_idx.emplace_back(DType::kInt64, std::vector<int64_t>{N, K});
    recv_w.emplace_back(DType::kFloat32, std::vector<int64_t>{N, K});
  }
  for (int r = 0; r < R; ++r) {
    auto& a = args[r];
    a.x = x[r].view();
    a.topk_idx = topk[r].view();
    a.topk_weights = w[r].view();
    a.num_tokens_per_rank = per_rank[r].view();
    a.num_tokens_per_expert = per_expert[r].view();
    a.is_token_in_rank = in_rank[r].view();
    a.num_experts = E;
    a.handle = {rpm[r].view(), src[r].view(), in_copy[r].view(), slot[r].view(),
                counts[r].num_recv_tokens};
    a.recv_x = recv[r].view();
    a.recv_topk_idx = recv_idx[r].view();
    a.recv_topk_weights = recv_w[r].view();
  }
  if (Error e = world.dispatch(args); !e.ok()) {
    std::printf("dispatch failed: %s\n", e.to_string().c_str());
    res.ok = false;
    return res;
  }
  std::vector<HostTensor> out;
  std::vector<epcomm::CombineArgs> cargs(R);
  for (int r = 0; r < R; ++r) out.emplace_back(DType::kBFloat16, std::vector<int64_t>{T, H});
  for (int r = 0; r < R; ++r) {
    cargs[r].x = recv[r].view();
    cargs[r].handle = args[r].handle;
    cargs[r].combined_x = out[r].view();
  }
  if (Error e = world.combine(cargs); !e.ok()) {
    std::printf("combine failed: %s\n", e.to_string().c_str());
    res.ok = false;
    return res;
  }
  for (int r = 0; r < R && res.ok; ++r)
    for (int64_t t = 0; t < T && res.ok; ++t) {
      int n = 0;
      for (int d = 0; d < R; ++d) n += in_rank[r].at<uint8_t>({t, d});
      for (int64_t h = 0; h < H; ++h) {
        const float want = epcomm::core::bf16_to_float(x[r].at<uint16_t>({t, h})) * n;
        if (out[r].at<uint16_t>({t, h}) != epcomm::core::float_to_bf16(want)) {
          std::printf("combine mismatch at rank %d token %ld\n", r, static_cast<long>(t));
          res.ok = false;
          break;
        }
      }
    }
  // Low-latency round trip (FP8 dispatch, identity experts, weighted combine).
  const int32_t n_max = static_cast<int32_t>(T);
  const int64_t E_local = E / R, rows = int64_t{R} * n_max;
  std::vector<HostTensor> px, ps, pc, si, lr, lout;
  std::vector<epcomm::LowLatencyDispatchArgs> ld(R);
  for (int r = 0; r < R; ++r) {
    px.emplace_back(DType::kBFloat16, std::vector<int64_t>{E_local, rows, H});
    pc.emplace_back(DType::kInt32, std::vector<int64_t>{E_local});
    si.emplace_back(DType::kInt32, std::vector<int64_t>{E_local, rows});
    lr.emplace_back(DType::kInt64, std::vector<int64_t>{E_local, R});
    lout.emplace_back(DType::kBFloat16, std::vector<int64_t>{T, H});
  }
  for (int r = 0; r < R; ++r) {
    ld[r].x = x[r].view();
    ld[r].topk_idx = topk[r].view();
    ld[r].num_max_dispatch_tokens_per_rank = n_max;
    ld[r].num_experts = E;
    ld[r].use_fp8 = false;
    ld[r].packed_recv_x = px[r].view();
    ld[r].packed_recv_count = pc[r].view();
    ld[r].handle = {si[r].view(), lr[r].view(), n_max, static_cast<int32_t>(H), E};
  }
  if (Error e = world.low_latency_dispatch(ld); !e.ok()) {
    std::printf("low-latency dispatch failed: %s\n", e.to_string().c_str());
    res.ok = false;
    return res;
  }
  std::vector<epcomm::LowLatencyCombineArgs> lc(R);
  for (int r = 0; r < R; ++r) {
    for (int64_t j = 0; j < E_local; ++j) res.selections += pc[r].at<int32_t>({j});
    lc[r].x = px[r].view();
    lc[r].topk_idx = topk[r].view();
    lc[r].topk_weights = w[r].view();
    lc[r].handle = ld[r].handle;
    lc[r].out = lout[r].view();
  }
  if (Error e = world.low_latency_combine(lc); !e.ok()) {
    std::printf("low-latency combine failed: %s\n", e.to_string().c_str());
    res.ok = false;
    return res;
  }
  // Weights sum to 1 over K distinct experts: the combine returns x (up to bf16 rounding).
  for (int r = 0; r < R && res.ok; ++r)
    for (int64_t i = 0; i < T * H; ++i) {
      const float a = epcomm::core::bf16_to_float(x[r].data<uint16_t>()[i]);
      const float b = epcomm::core::bf16_to_float(lout[r].data<uint16_t>()[i]);
      if (std::fabs(a - b) > std::fabs(a) * 0.01f + 1e-6f) {
        std::printf("low-latency combine mismatch at rank %d element %ld: %f vs %f\n", r,
                    static_cast<long>(i), a, b);
        res.ok = false;
        break;
      }
    }
  return res;
}

// One process per GPU: create, barrier, write a byte pattern into every peer, verify.
bool gpu_connectivity(int num_gpus) {
  epcomm::harness::LaunchOptions opts;
  opts.num_ranks = num_gpus;
  opts.wall_timeout_seconds = 120;
  const auto result = epcomm::harness::run_ranks(opts, [](epcomm::harness::RankContext& ctx) {
    epcomm::BufferOptions o;
    o.rank = ctx.rank;
    o.num_ranks = ctx.num_ranks;
    o.device = ctx.rank;
    o.num_nvl_bytes = 1 << 20;
    o.timeout_seconds = 10;
    std::unique_ptr<epcomm::Buffer> buffer;
    if (Error e = epcomm::Buffer::create(o, ctx.all_gather, &buffer); !e.ok()) {
      std::printf("[rank %d] Buffer::create failed: %s\n", ctx.rank, e.to_string().c_str());
      return 1;
    }
    cudaStream_t s;
    cudaStreamCreate(&s);
    const int64_t chunk = 4096;
    for (int d = 0; d < ctx.num_ranks; ++d)
      cudaMemsetAsync(static_cast<uint8_t*>(buffer->peer_region(d, false)) + ctx.rank * chunk,
                      0x40 + ctx.rank, chunk, s);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 100; ++i) (void)buffer->barrier(s);
    Error e = buffer->synchronize(s);
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count() /
        100;
    std::vector<uint8_t> host(chunk * ctx.num_ranks);
    cudaMemcpy(host.data(), buffer->local_region(false), host.size(), cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int src = 0; src < ctx.num_ranks; ++src)
      for (int64_t i = 0; i < chunk; ++i) bad += host[src * chunk + i] != 0x40 + src;
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, buffer->device());
    std::printf(
        "[rank %d] %s: barrier %s (%.1f us per barrier, host-timed), bytes from %d ranks %s\n",
        ctx.rank, prop.name, e.ok() ? "ok" : e.to_string().c_str(), us, ctx.num_ranks,
        bad ? "WRONG" : "verified");
    ctx.host_barrier();
    cudaStreamDestroy(s);
    return (e.ok() && bad == 0) ? 0 : 1;
  });
  std::printf("gpu connectivity over %d GPUs: %s\n", num_gpus,
              result.ok() ? "ok" : result.describe().c_str());
  return result.ok();
}

int count_gpus_in_child() {
  epcomm::harness::LaunchOptions opts;
  opts.num_ranks = 1;
  const auto r = epcomm::harness::run_ranks(opts, [](epcomm::harness::RankContext&) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    return n > 8 ? 8 : n;
  });
  return r.exit_codes.empty() ? 0 : r.exit_codes[0];
}

}  // namespace

int main() {
  std::printf("epcomm %s demo\n", epcomm::version());
  std::printf("== CPU reference simulation (no GPU needed) ==\n");
  bool ok = true;
  for (int R : {2, 4, 8}) {
    const auto t0 = std::chrono::steady_clock::now();
    const SimResult s = simulate(R, 64, 512, 4, 8 * R);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "simulated EP%d: 64 tokens/rank, hidden 512, top-4 of %d experts: normal dispatch moved "
        "%ld rows, "
        "combine(dispatch(x)) == x * destinations: %s; low-latency moved %ld (token, expert) rows, "
        "weighted combine returns x: %s (%.0f ms)\n",
        R, 8 * R, static_cast<long>(s.rows), s.ok ? "yes" : "NO", static_cast<long>(s.selections),
        s.ok ? "yes" : "NO", ms);
    ok = ok && s.ok;
  }
  const int gpus = count_gpus_in_child();
  if (gpus == 0) {
    std::printf("== GPU runtime: no GPU on this machine, connectivity check skipped ==\n");
  } else if (gpus == 1) {
    std::printf("== GPU runtime: one GPU, nothing to connect; creating a 1-rank Buffer ==\n");
    ok = gpu_connectivity(1) && ok;
  } else {
    std::printf("== GPU runtime: %d GPUs, one process each ==\n", gpus);
    ok = gpu_connectivity(gpus) && ok;
  }
  std::printf("demo %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}
