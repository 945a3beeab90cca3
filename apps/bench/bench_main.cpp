// epcomm_bench: dispatch/combine benchmark on the local GPUs, in the manner of nccl-tests.
// One process per GPU (harness launcher). Every op is timed with CUDA events after a GPU barrier
// that aligns the ranks; time_us is the mean over ranks of each rank's mean, gbps the mean over
// ranks of (bytes of that rank / its mean time) with DeepEP's byte accounting. Baselines in the
// same run: NCCL grouped send/recv of the same rows, and an SM-driven NVLink push.
//
//   epcomm_bench [--mode normal|ll] [--ranks N] [--tokens T] [--hidden H] [--topk K]
//                [--experts E] [--sms S] [--dtype fp8|bf16] [--routing uniform|skewed]
//                [--warmup W] [--iters I] [--check] [--sweep none|sms|tokens|all]
//                [--json FILE] [--commit SHA]
// --mode ll measures the low-latency kernels (defaults: 128 tokens = N_max, hidden 7168, top-8
// of 288, FP8, 50 warm-ups, 500 iterations, L2 flushed before each call); its sweep "tokens"
// covers {1, 8, 32, 64, 128, 256} x hidden {4096, 7168}. Besides the CUDA-event times it
// reports each LL op's and NCCL baseline's kernel durations from CUPTI (ops ending in _kernel;
// DeepEP's accounting), where libcupti loads (EPCOMM_CUPTI_LIBRARY names it). --sms and --check
// apply to normal mode.
// Environment, for diagnosis: EPCOMM_BENCH_ONLY=<op> times one op (the others run once, untimed,
// for their results); EPCOMM_BENCH_OVERSUBSCRIBE=1 lets ranks share GPUs (times not comparable);
// EPCOMM_TRACE=1, EPCOMM_FLAG_CHECK_NS and EPCOMM_COMBINE_SEND_WARPS are read by the library
// (docs/perf.md).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench_low_latency.h"
#include "bench_normal.h"

namespace eb = epcomm::bench;

namespace {

struct Options {
  int ranks = 0;  // 0: every visible GPU
  bool ll = false;
  eb::NormalConfig base;
  eb::LowLatencyConfig ll_base;
  bool set_tokens = false, set_experts = false, set_warmup = false, set_iters = false;
  std::string sweep = "none";
  std::string json;
  std::string commit = "unknown";
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(
      stderr, "epcomm_bench: %s\n(see the header of apps/bench/bench_main.cpp for options)\n", msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  if (const char* c = std::getenv("EPCOMM_COMMIT")) o.commit = c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      const auto eq = a.find('=');
      if (eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    const std::string key = a.substr(0, a.find('='));
    if (key == "--ranks")
      o.ranks = std::stoi(value());
    else if (key == "--mode") {
      const std::string m = value();
      if (m != "normal" && m != "ll") usage("--mode must be normal or ll");
      o.ll = m == "ll";
    } else if (key == "--dtype") {
      const std::string d = value();
      if (d != "fp8" && d != "bf16") usage("--dtype must be fp8 or bf16");
      o.ll_base.fp8 = d == "fp8";
    } else if (key == "--tokens")
      o.base.tokens = std::stoll(value()), o.set_tokens = true;
    else if (key == "--hidden")
      o.base.hidden = std::stoll(value());
    else if (key == "--topk")
      o.base.topk = std::stoll(value());
    else if (key == "--experts")
      o.base.experts = std::stoi(value()), o.set_experts = true;
    else if (key == "--sms")
      o.base.sms = std::stoi(value());
    else if (key == "--warmup")
      o.base.warmup = std::stoi(value()), o.set_warmup = true;
    else if (key == "--iters")
      o.base.iters = std::stoi(value()), o.set_iters = true;
    else if (key == "--routing") {
      const std::string r = value();
      if (r != "uniform" && r != "skewed") usage("--routing must be uniform or skewed");
      o.base.skewed = r == "skewed";
    } else if (key == "--check")
      o.base.check = true;
    else if (key == "--sweep")
      o.sweep = value();
    else if (key == "--json")
      o.json = value();
    else if (key == "--commit")
      o.commit = value();
    else
      usage(("unknown option " + a).c_str());
  }
  if (o.base.hidden % 128 != 0) usage("--hidden must be a multiple of 128 (FP8 scales)");
  if (o.base.iters < 1 || o.base.warmup < 0) usage("--iters must be >= 1 and --warmup >= 0");
  o.ll_base.hidden = o.base.hidden;
  o.ll_base.topk = o.base.topk;
  if (o.set_tokens) o.ll_base.tokens = o.base.tokens;
  if (o.set_experts) o.ll_base.experts = o.base.experts;
  if (o.set_warmup) o.ll_base.warmup = o.base.warmup;
  if (o.set_iters) o.ll_base.iters = o.base.iters;
  if (o.ll && (o.ll_base.tokens < 1 || o.ll_base.tokens > 1024))
    usage("--tokens must be in [1, 1024] with --mode ll");
  return o;
}

std::vector<eb::NormalConfig> configs(const Options& o) {
  std::vector<eb::NormalConfig> list;
  if (o.sweep == "none") list.push_back(o.base);
  if (o.sweep == "sms" || o.sweep == "all")
    for (int sms : {8, 12, 16, 24, 32}) {
      auto c = o.base;
      c.sms = sms;
      list.push_back(c);
    }
  if (o.sweep == "tokens" || o.sweep == "all")
    for (int64_t t : {512, 1024, 2048, 4096, 8192, 16384}) {
      auto c = o.base;
      c.tokens = t;
      list.push_back(c);
    }
  if (list.empty()) usage("--sweep must be none, sms, tokens or all");
  return list;
}

std::vector<eb::LowLatencyConfig> ll_configs(const Options& o) {
  std::vector<eb::LowLatencyConfig> list;
  if (o.sweep == "none") list.push_back(o.ll_base);
  if (o.sweep == "tokens" || o.sweep == "all")
    for (int64_t h : {4096, 7168})
      for (int64_t t : {1, 8, 32, 64, 128, 256}) {
        auto c = o.ll_base;
        c.tokens = t;
        c.hidden = h;
        list.push_back(c);
      }
  if (list.empty()) usage("--sweep must be none, tokens or all with --mode ll");
  return list;
}

// Per-rank results travel to rank 0 through the all-gather as fixed-size records.
struct Wire {
  char op[32];  // the longest op name, ll_overlap_send_compute_recv, and its NUL
  char dtype[8];
  double mean_us, median_us, bytes, nvlink_bytes;
};

int count_gpus() {
  epcomm::harness::LaunchOptions lo;
  lo.num_ranks = 1;
  auto r = epcomm::harness::run_ranks(lo, [](epcomm::harness::RankContext&) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    return n;
  });
  return r.exit_codes.empty() ? 0 : r.exit_codes[0];
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  const int gpus = count_gpus();
  if (gpus == 0) {
    std::printf(
        "epcomm_bench: no GPU visible; nothing to measure (the CPU reference runs in "
        "epcomm_demo)\n");
    return 0;
  }
  const int R = o.ranks > 0 ? o.ranks : gpus;
  // EPCOMM_BENCH_OVERSUBSCRIBE=1: ranks share GPUs (rank % GPUs); for functional diagnosis only,
  // the times are not comparable.
  const bool shared = std::getenv("EPCOMM_BENCH_OVERSUBSCRIBE") != nullptr;
  if (R > gpus && !shared) usage("--ranks exceeds the visible GPUs");
  // One job per configuration: what it prints and how it runs on a rank.
  struct Job {
    int64_t tokens, hidden, topk;
    int32_t experts, sms;  // sms 0: every SM of the card (low-latency kernels)
    std::function<eb::RankBench(epcomm::harness::RankContext&, epcomm::Buffer&, eb::Nccl*,
                                eb::NcclComm)>
        run;
  };
  std::vector<Job> jobs;
  int64_t nvl_bytes = 0, rdma_bytes = 0;
  if (!o.ll) {
    for (const auto& c : configs(o)) {
      jobs.push_back({c.tokens, c.hidden, c.topk, c.experts, c.sms,
                      [c](auto& ctx, auto& b, auto* n, auto comm) {
                        return eb::bench_normal(ctx, b, n, comm, c, 42);
                      }});
      nvl_bytes = std::max(nvl_bytes, epcomm::get_normal_buffer_size_hint(
                                          c.tokens, c.hidden * 2, R, static_cast<int32_t>(c.topk)));
    }
  } else {
    for (const auto& c : ll_configs(o)) {
      jobs.push_back(
          {c.tokens, c.hidden, c.topk, c.experts, 0, [c](auto& ctx, auto& b, auto* n, auto comm) {
             return eb::bench_low_latency(ctx, b, n, comm, c, 42);
           }});
      rdma_bytes = std::max(rdma_bytes, epcomm::get_low_latency_buffer_size_hint(
                                            static_cast<int32_t>(c.tokens),
                                            static_cast<int32_t>(c.hidden), R, c.experts));
      // The NVLink ceiling of the combine's rows pushes them into the peers' normal region.
      nvl_bytes = std::max(nvl_bytes, c.tokens * c.topk * c.hidden * 2);
    }
    if (rdma_bytes == 0) usage("--experts must be a multiple of the rank count with --mode ll");
  }

  epcomm::harness::LaunchOptions lo;
  lo.num_ranks = R;
  lo.wall_timeout_seconds = 1800;
  lo.all_gather_timeout_seconds = 600;
  const auto result = epcomm::harness::run_ranks(lo, [&](epcomm::harness::RankContext& ctx) {
    const int device = ctx.rank % gpus;
    cudaSetDevice(device);
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, device);
    epcomm::BufferOptions bo;
    bo.rank = ctx.rank;
    bo.num_ranks = R;
    bo.device = device;
    bo.num_nvl_bytes = nvl_bytes;
    bo.num_rdma_bytes = rdma_bytes;
    bo.low_latency_mode = o.ll;
    bo.timeout_seconds = 60;
    std::unique_ptr<epcomm::Buffer> buffer;
    if (auto e = epcomm::Buffer::create(bo, ctx.all_gather, &buffer); !e.ok()) {
      std::fprintf(stderr, "[rank %d] %s\n", ctx.rank, e.to_string().c_str());
      return 1;
    }
    eb::Nccl nccl;
    std::string why;
    eb::NcclComm comm = nullptr;
    const bool have_nccl = !shared && nccl.load(&why);  // NCCL refuses ranks sharing a GPU
    std::vector<eb::NcclUniqueId> ids(R);
    eb::NcclUniqueId id{};
    if (have_nccl && ctx.rank == 0) nccl.get_unique_id(&id);
    ctx.all_gather(&id, ids.data(), sizeof(id));
    if (have_nccl && nccl.comm_init_rank(&comm, R, ids[0], ctx.rank) != 0) comm = nullptr;
    if (ctx.rank == 0) {
      std::printf("# epcomm_bench %s: %d x %s (%d SMs), commit %s, NCCL baseline: %s\n",
                  epcomm::version(), R, prop.name, prop.multiProcessorCount, o.commit.c_str(),
                  comm ? "yes" : ("no: " + why).c_str());
      std::printf("# %-14s %-5s %6s %6s %4s %5s %4s %10s %10s %8s %8s\n", "op", "dtype", "tokens",
                  "hidden", "topk", "exp", "sms", "mean_us", "median_us", "GB/s", "NVL GB/s");
    }
    std::string json;
    for (const auto& c : jobs) {
      eb::RankBench rb;
      const int sms = c.sms > 0 ? c.sms : prop.multiProcessorCount;
      try {
        rb = c.run(ctx, *buffer, have_nccl ? &nccl : nullptr, comm);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "[rank %d] %s\n", ctx.rank, ex.what());
        return 1;
      }
      std::vector<Wire> mine(rb.samples.size());
      for (size_t i = 0; i < mine.size(); ++i) {
        std::memset(&mine[i], 0, sizeof(Wire));
        std::strncpy(mine[i].op, rb.samples[i].op.c_str(), sizeof(mine[i].op) - 1);
        std::strncpy(mine[i].dtype, rb.samples[i].dtype.c_str(), sizeof(mine[i].dtype) - 1);
        mine[i].mean_us = rb.samples[i].mean_us;
        mine[i].median_us = rb.samples[i].median_us;
        mine[i].bytes = rb.samples[i].bytes;
        mine[i].nvlink_bytes = rb.samples[i].nvlink_bytes;
      }
      std::vector<Wire> all(mine.size() * R);
      ctx.all_gather(mine.data(), all.data(), mine.size() * sizeof(Wire));
      if (!rb.check_result.empty())
        std::printf("# [rank %d] --check: %s\n", ctx.rank, rb.check_result.c_str());
      if (ctx.rank != 0) continue;
      for (size_t i = 0; i < mine.size(); ++i) {
        double mean = 0, median = 0, gbps = 0, nvl = 0;
        for (int r = 0; r < R; ++r) {
          const Wire& w = all[r * mine.size() + i];
          mean += w.mean_us / R;
          median += w.median_us / R;
          gbps += w.bytes / (w.mean_us * 1e3) / R;
          nvl += w.nvlink_bytes / (w.mean_us * 1e3) / R;
        }
        std::printf("  %-14s %-5s %6ld %6ld %4ld %5d %4d %10.1f %10.1f %8.1f %8.1f\n", mine[i].op,
                    mine[i].dtype, static_cast<long>(c.tokens), static_cast<long>(c.hidden),
                    static_cast<long>(c.topk), c.experts, sms, mean, median, gbps, nvl);
        char rec[640];
        std::snprintf(
            rec, sizeof(rec),
            "  {\"op\": \"%s\", \"dtype\": \"%s\", \"tokens\": %ld, \"hidden\": %ld, \"topk\": "
            "%ld, "
            "\"experts\": %d, \"ranks\": %d, \"sms\": %d, \"routing\": \"%s\", \"time_us\": %.2f, "
            "\"median_us\": %.2f, \"gbps\": %.2f, \"nvlink_gbps\": %.2f, \"card\": \"%s\", "
            "\"commit\": \"%s\"}",
            mine[i].op, mine[i].dtype, static_cast<long>(c.tokens), static_cast<long>(c.hidden),
            static_cast<long>(c.topk), c.experts, R, sms,
            o.base.skewed && !o.ll ? "skewed" : "uniform", mean, median, gbps, nvl, prop.name,
            o.commit.c_str());
        json += (json.empty() ? "" : ",\n") + std::string(rec);
      }
      std::fflush(stdout);
    }
    if (ctx.rank == 0 && !o.json.empty()) {
      std::ofstream f(o.json);
      f << "[\n" << json << "\n]\n";
    }
    ctx.host_barrier();
    if (comm) nccl.comm_destroy(comm);
    return 0;
  });
  if (!result.ok()) {
    std::fprintf(stderr, "epcomm_bench failed: %s\n", result.describe().c_str());
    return 1;
  }
  return 0;
}
