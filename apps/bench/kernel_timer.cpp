#include "kernel_timer.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#if defined(EPCOMM_BENCH_CUPTI)
#include <cupti_activity.h>
#endif

namespace epcomm::bench {

std::vector<double> per_call_us(const std::vector<KernelRecord>& records, uint32_t device,
                                const std::vector<std::string>& parts, int calls, int skip,
                                std::string* why) {
  std::vector<const KernelRecord*> mine;
  for (const auto& r : records) {
    bool match = r.device == device;
    for (const auto& p : parts) match = match && r.name.find(p) != std::string::npos;
    if (match) mine.push_back(&r);
  }
  if (calls <= 0 || mine.empty() || mine.size() % static_cast<size_t>(calls) != 0) {
    *why =
        std::to_string(mine.size()) + " matching kernels for " + std::to_string(calls) + " calls";
    return {};
  }
  const size_t per_call = mine.size() / static_cast<size_t>(calls);
  std::vector<double> us;
  for (int c = skip; c < calls; ++c) {
    uint64_t ns = 0;
    for (size_t k = 0; k < per_call; ++k) {
      const KernelRecord* r = mine[c * per_call + k];
      ns += r->end_ns - r->start_ns;
    }
    us.push_back(static_cast<double>(ns) * 1e-3);
  }
  return us;
}

#if !defined(EPCOMM_BENCH_CUPTI)

KernelTimer* KernelTimer::get(std::string* why) {
  *why = "built without CUPTI headers";
  return nullptr;
}
bool KernelTimer::begin(std::string* why) {
  *why = "built without CUPTI headers";
  return false;
}
std::vector<KernelRecord> KernelTimer::end() {
  return {};
}

#else

namespace {

struct Cupti {
  decltype(&cuptiActivityEnable) enable = nullptr;
  decltype(&cuptiActivityDisable) disable = nullptr;
  decltype(&cuptiActivityRegisterCallbacks) register_callbacks = nullptr;
  decltype(&cuptiActivityFlushAll) flush_all = nullptr;
  decltype(&cuptiActivityGetNextRecord) next_record = nullptr;
};

Cupti g_cupti;
std::mutex g_mutex;
std::vector<KernelRecord> g_records;
constexpr size_t kBufferBytes = size_t{8} << 20;

void CUPTIAPI request_buffer(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer != nullptr ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI complete_buffer(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (g_cupti.next_record(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL &&
        record->kind != CUPTI_ACTIVITY_KIND_KERNEL)
      continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    if (k->name == nullptr || k->end < k->start) continue;
    g_records.push_back(KernelRecord{k->name, k->deviceId, k->start, k->end});
  }
  std::free(buffer);
}

bool load(std::string* why) {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("EPCOMM_CUPTI_LIBRARY")) candidates.push_back(env);
  for (const char* p :
       {"libcupti.so.13", "libcupti.so", "/usr/local/cuda/lib64/libcupti.so.13",
        "/usr/local/cuda/lib/libcupti.so.13", "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13"})
    candidates.push_back(p);
  void* handle = nullptr;
  for (const auto& path : candidates)
    if ((handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
  if (handle == nullptr) {
    *why = "libcupti.so.13 not found (set EPCOMM_CUPTI_LIBRARY)";
    return false;
  }
  auto sym = [handle](const char* name) { return dlsym(handle, name); };
  g_cupti.enable = reinterpret_cast<decltype(g_cupti.enable)>(sym("cuptiActivityEnable"));
  g_cupti.disable = reinterpret_cast<decltype(g_cupti.disable)>(sym("cuptiActivityDisable"));
  g_cupti.register_callbacks =
      reinterpret_cast<decltype(g_cupti.register_callbacks)>(sym("cuptiActivityRegisterCallbacks"));
  g_cupti.flush_all = reinterpret_cast<decltype(g_cupti.flush_all)>(sym("cuptiActivityFlushAll"));
  g_cupti.next_record =
      reinterpret_cast<decltype(g_cupti.next_record)>(sym("cuptiActivityGetNextRecord"));
  if (!g_cupti.enable || !g_cupti.disable || !g_cupti.register_callbacks || !g_cupti.flush_all ||
      !g_cupti.next_record) {
    *why = "libcupti lacks an expected symbol";
    return false;
  }
  if (g_cupti.register_callbacks(request_buffer, complete_buffer) != CUPTI_SUCCESS) {
    *why = "cuptiActivityRegisterCallbacks failed";
    return false;
  }
  return true;
}

}  // namespace

KernelTimer* KernelTimer::get(std::string* why) {
  static std::string load_error;
  static KernelTimer* timer = load(&load_error) ? new KernelTimer() : nullptr;
  if (timer == nullptr) *why = load_error;
  return timer;
}

bool KernelTimer::begin(std::string* why) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_records.clear();
  }
  // Concurrent-kernel records do not serialise kernels (KIND_KERNEL would).
  if (g_cupti.enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    *why = "cuptiActivityEnable(CONCURRENT_KERNEL) failed";
    return false;
  }
  return true;
}

std::vector<KernelRecord> KernelTimer::end() {
  g_cupti.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  g_cupti.disable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<KernelRecord> out;
  out.swap(g_records);
  std::sort(out.begin(), out.end(),
            [](const KernelRecord& a, const KernelRecord& b) { return a.start_ns < b.start_ns; });
  return out;
}

#endif

}  // namespace epcomm::bench
