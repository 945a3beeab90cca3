#include "harness/launcher.h"

#include <cuda_runtime.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace epcomm::harness {
namespace {

constexpr size_t kSlotBytes = 64 * 1024;

// Lives in a MAP_SHARED mapping created before fork. Generation g of the all-gather uses data
// half g % 2; arrive[r] = g + 1 once rank r wrote its slot, depart[r] = g + 1 once it copied
// every slot out, so a half is reused only after every rank left it.
struct SharedState {
  std::atomic<uint64_t> arrive[kMaxHarnessRanks];
  std::atomic<uint64_t> depart[kMaxHarnessRanks];
  uint8_t data[2][kMaxHarnessRanks][kSlotBytes];
};

class ShmAllGather {
 public:
  ShmAllGather(SharedState* s, int rank, int num_ranks, double timeout)
      : s_(s), rank_(rank), num_ranks_(num_ranks), timeout_(timeout) {}

  void operator()(const void* mine, void* all, size_t bytes) {
    if (bytes > kSlotBytes)
      throw std::runtime_error("harness all-gather: " + std::to_string(bytes) +
                               " bytes per rank exceed the slot of " + std::to_string(kSlotBytes));
    const uint64_t g = generation_++;
    if (g >= 2) wait_all(s_->depart, g - 1, "leave all-gather #" + std::to_string(g - 2));
    std::memcpy(s_->data[g % 2][rank_], mine, bytes);
    s_->arrive[rank_].store(g + 1, std::memory_order_release);  // publishes the slot above
    wait_all(s_->arrive, g + 1, "arrive at all-gather #" + std::to_string(g));
    for (int r = 0; r < num_ranks_; ++r)
      std::memcpy(static_cast<uint8_t*>(all) + r * bytes, s_->data[g % 2][r], bytes);
    s_->depart[rank_].store(g + 1, std::memory_order_release);  // our reads of half g%2 are done
  }

 private:
  void wait_all(std::atomic<uint64_t>* counters, uint64_t target, const std::string& what) {
    const auto start = std::chrono::steady_clock::now();
    while (true) {
      std::string missing;
      for (int r = 0; r < num_ranks_; ++r)
        if (counters[r].load(std::memory_order_acquire) < target)
          missing += " " + std::to_string(r);
      if (missing.empty()) return;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_)
        throw std::runtime_error("harness all-gather on rank " + std::to_string(rank_) +
                                 " timed out after " + std::to_string(waited) +
                                 " s waiting for ranks" + missing + " to " + what);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  SharedState* s_;
  int rank_;
  int num_ranks_;
  double timeout_;
  uint64_t generation_ = 0;
};

}  // namespace

bool LaunchResult::ok() const {
  if (timed_out || exit_codes.empty()) return false;
  for (int c : exit_codes)
    if (c != 0) return false;
  return true;
}

bool LaunchResult::skipped() const {
  if (exit_codes.empty()) return false;
  for (int c : exit_codes)
    if (c != kSkipExitCode) return false;
  return true;
}

std::string LaunchResult::describe() const {
  std::ostringstream os;
  for (size_t r = 0; r < exit_codes.size(); ++r) {
    os << (r ? "; " : "") << "rank " << r << ": ";
    if (exit_codes[r] < 0) {
      os << "killed by signal " << -exit_codes[r];
    } else {
      os << "exit " << exit_codes[r];
    }
  }
  if (timed_out) os << " (wall-clock limit reached, survivors killed)";
  return os.str();
}

LaunchResult run_ranks(const LaunchOptions& options, const std::function<int(RankContext&)>& body) {
  LaunchResult result;
  const int n = options.num_ranks;
  if (n < 1 || n > kMaxHarnessRanks) {
    result.exit_codes.assign(1, 2);
    std::fprintf(stderr, "run_ranks: num_ranks must be in [1, %d], got %d\n", kMaxHarnessRanks, n);
    return result;
  }
  void* mem =
      mmap(nullptr, sizeof(SharedState), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    result.exit_codes.assign(n, 2);
    return result;
  }
  auto* state = new (mem) SharedState();
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids(n, -1);
  for (int r = 0; r < n; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      int code = 2;
      try {
        ShmAllGather gather(state, r, n, options.all_gather_timeout_seconds);
        RankContext ctx;
        ctx.rank = r;
        ctx.num_ranks = n;
        ctx.all_gather = [&gather](const void* mine, void* all, size_t bytes) {
          gather(mine, all, bytes);
        };
        ctx.host_barrier = [&gather]() {
          char none = 0;
          std::vector<char> all(kMaxHarnessRanks);
          gather(&none, all.data(), 1);
        };
        code = body(ctx);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "[rank %d] exception: %s\n", r, e.what());
      }
      std::fflush(stdout);
      std::fflush(stderr);
      _exit(code);
    }
    pids[r] = pid;
  }
  result.exit_codes.assign(n, 2);
  const auto start = std::chrono::steady_clock::now();
  int remaining = n;
  while (remaining > 0) {
    for (int r = 0; r < n; ++r) {
      if (pids[r] < 0) continue;
      int status = 0;
      if (waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        result.exit_codes[r] = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        pids[r] = -1;
        --remaining;
      }
    }
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (remaining > 0 && waited > options.wall_timeout_seconds) {
      result.timed_out = true;
      for (int r = 0; r < n; ++r) {
        if (pids[r] < 0) continue;
        std::fprintf(stderr, "run_ranks: rank %d still running after %.0f s: killing it\n", r,
                     waited);
        kill(pids[r], SIGKILL);
        int status = 0;
        waitpid(pids[r], &status, 0);
        result.exit_codes[r] = -SIGKILL;
        pids[r] = -1;
      }
      break;
    }
    if (remaining > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  munmap(mem, sizeof(SharedState));
  return result;
}

int device_for_rank(int rank, int num_ranks) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return -1;
  if (count >= num_ranks) return rank;
  const char* over = std::getenv("EPCOMM_TEST_OVERSUBSCRIBE");
  if (over != nullptr && std::strcmp(over, "1") == 0) return rank % count;
  return -1;
}

}  // namespace epcomm::harness
