// Buffer creation, teardown, barrier and the bounded host wait.
#include <atomic>
#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>

#include "core/log.h"
#include "core/validate.h"
#include "kernels/barrier.h"
#include "runtime/bootstrap.h"
#include "runtime/buffer_impl.h"
#include "runtime/cuda_check.h"

namespace epcomm {
namespace {

using core::LogLevel;
using runtime::cuda_error;

std::string format_seconds(double s) {
  std::ostringstream os;
  os.precision(3);
  os << s << " s";
  return os.str();
}

// Local setup before the exchange: device, allocation, signal reset, IPC export, error record.
Error setup_local(Buffer::Impl& impl, runtime::RankInfo* info) {
  int count = 0;
  if (auto e = cuda_error(cudaGetDeviceCount(&count), "cudaGetDeviceCount"); !e.ok()) return e;
  if (count == 0) return Error(ErrorCode::kCudaError, "Buffer::create: no CUDA device is visible");
  const int32_t device =
      impl.options.device >= 0 ? impl.options.device : impl.topo.local_rank() % count;
  if (device >= count)
    return Error(ErrorCode::kInvalidArgument,
                 "Buffer::create: device: expected an ordinal below the " + std::to_string(count) +
                     " visible devices, got " + std::to_string(device));
  impl.device = device;
  if (auto e = cuda_error(cudaSetDevice(device), "cudaSetDevice"); !e.ok()) return e;
  if (auto e = cuda_error(cudaDeviceGetPCIBusId(info->pci_bus_id, sizeof(info->pci_bus_id), device),
                          "cudaDeviceGetPCIBusId");
      !e.ok())
    return e;
  info->device = device;
  impl.layout = core::BufferLayout::make(impl.options.num_nvl_bytes, impl.options.num_rdma_bytes);
  void* base = nullptr;
  if (auto e = cuda_error(cudaMalloc(&base, impl.layout.total_bytes),
                          "cudaMalloc of " + std::to_string(impl.layout.total_bytes) + " bytes");
      !e.ok())
    return e;
  impl.local_base = static_cast<uint8_t*>(base);
  // Signals start at zero before any peer can learn our handle (it learns it after this).
  if (auto e = cuda_error(cudaMemset(base, 0, impl.layout.signal_bytes),
                          "cudaMemset of the signal area");
      !e.ok())
    return e;
  if (auto e = cuda_error(cudaDeviceSynchronize(), "cudaDeviceSynchronize after buffer setup");
      !e.ok())
    return e;
  if (auto e = cuda_error(cudaIpcGetMemHandle(&info->ipc_handle, base), "cudaIpcGetMemHandle");
      !e.ok())
    return e;
  info->total_bytes = impl.layout.total_bytes;
  void* record = nullptr;
  if (auto e = cuda_error(
          cudaHostAlloc(&record, sizeof(core::DeviceErrorRecord) + sizeof(core::HostControl),
                        cudaHostAllocMapped),
          "cudaHostAlloc of the error record");
      !e.ok())
    return e;
  std::memset(record, 0, sizeof(core::DeviceErrorRecord) + sizeof(core::HostControl));
  impl.error_host = static_cast<core::DeviceErrorRecord*>(record);
  impl.control_host = reinterpret_cast<core::HostControl*>(impl.error_host + 1);
  void* dev_record = nullptr;
  if (auto e =
          cuda_error(cudaHostGetDevicePointer(&dev_record, record, 0), "cudaHostGetDevicePointer");
      !e.ok())
    return e;
  impl.error_device = static_cast<core::DeviceErrorRecord*>(dev_record);
  impl.control_device = reinterpret_cast<core::HostControl*>(impl.error_device + 1);
  void* counts = nullptr;
  if (auto e =
          cuda_error(cudaHostAlloc(&counts, sizeof(kernels::NotifyHostCounts), cudaHostAllocMapped),
                     "cudaHostAlloc of the notify counts");
      !e.ok())
    return e;
  std::memset(counts, 0, sizeof(kernels::NotifyHostCounts));
  impl.notify_host = static_cast<kernels::NotifyHostCounts*>(counts);
  if (auto e =
          cuda_error(cudaHostGetDevicePointer(&dev_record, counts, 0), "cudaHostGetDevicePointer");
      !e.ok())
    return e;
  impl.notify_device = static_cast<kernels::NotifyHostCounts*>(dev_record);
  void* block_counters = nullptr;
  // Device scratch: [0, 64) epochs (8 x uint64: barrier, notify, dispatch, combine, LL, the LL
  // release left pending);
  // [64, 128) block counters (16 x uint32); [128, 192) LL hook slots (8 x uint64);
  // [192, 196) the device-local copy of "a wait failed" (WaitContext::failed); [200, 204) the
  // arrival tag the copy-engine combine writes (runtime/combine_copy.cpp).
  if (auto e =
          cuda_error(cudaMalloc(&block_counters, 256), "cudaMalloc of epoch and block counters");
      !e.ok())
    return e;
  impl.epochs = static_cast<uint64_t*>(block_counters);
  impl.block_counters = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(block_counters) + 64);
  impl.hook_epochs = reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(block_counters) + 128);
  impl.wait_failed = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(block_counters) + 192);
  impl.copy_tag = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(block_counters) + 200);
  if (auto e = cuda_error(cudaMemset(block_counters, 0, 256), "cudaMemset of epoch counters");
      !e.ok())
    return e;
  // The low-latency region holds flags and arrival tags: it starts at zero like the signals.
  if (impl.layout.rdma_bytes > 0)
    if (auto e = cuda_error(
            cudaMemset(impl.local_base + impl.layout.rdma_offset, 0, impl.layout.rdma_bytes),
            "cudaMemset of the low-latency region");
        !e.ok())
      return e;
  if (auto e = cuda_error(cudaDeviceSynchronize(), "cudaDeviceSynchronize after scratch setup");
      !e.ok())
    return e;
  if (auto e = cuda_error(
          cudaDeviceGetAttribute(&impl.num_device_sms, cudaDevAttrMultiProcessorCount, device),
          "cudaDeviceGetAttribute");
      !e.ok())
    return e;
  return Error::success();
}

// Maps every peer's buffer (after the exchange) and checks P2P access for every pair.
Error map_peers(Buffer::Impl& impl, const std::vector<runtime::RankInfo>& infos) {
  const int32_t R = impl.topo.num_ranks;
  const int32_t me = impl.topo.rank;
  impl.peer_bases.assign(R, nullptr);
  impl.peer_opened.assign(R, false);
  impl.peer_bases[me] = impl.local_base;
  for (int32_t r = 0; r < R; ++r) {
    if (r == me) continue;
    int peer_device = -1;
    if (cudaDeviceGetByPCIBusId(&peer_device, infos[r].pci_bus_id) == cudaSuccess &&
        peer_device != impl.device) {
      int can = 0;
      if (auto e = cuda_error(cudaDeviceCanAccessPeer(&can, impl.device, peer_device),
                              "cudaDeviceCanAccessPeer");
          !e.ok())
        return e;
      if (!can)
        return Error(ErrorCode::kNotSupported,
                     "Buffer::create: no P2P access from rank " + std::to_string(me) + " (GPU " +
                         infos[me].pci_bus_id + ") to rank " + std::to_string(r) + " (GPU " +
                         infos[r].pci_bus_id + "): every pair of ranks on a node needs NVLink/P2P");
    }
    cudaGetLastError();  // clear a failed lookup of a device this process cannot see
    void* ptr = nullptr;
    const cudaError_t st =
        cudaIpcOpenMemHandle(&ptr, infos[r].ipc_handle, cudaIpcMemLazyEnablePeerAccess);
    if (st != cudaSuccess)
      return cuda_error(st, "Buffer::create: mapping rank " + std::to_string(r) +
                                "'s buffer (GPU " + infos[r].pci_bus_id + ") on rank " +
                                std::to_string(me) + " (GPU " + infos[me].pci_bus_id +
                                ") with cudaIpcOpenMemHandle");
    impl.peer_bases[r] = static_cast<uint8_t*>(ptr);
    impl.peer_opened[r] = true;
  }
  void* table = nullptr;
  if (auto e = cuda_error(cudaMalloc(&table, sizeof(uint8_t*) * R), "cudaMalloc of the peer table");
      !e.ok())
    return e;
  impl.peer_bases_device = static_cast<uint8_t**>(table);
  return cuda_error(
      cudaMemcpy(table, impl.peer_bases.data(), sizeof(uint8_t*) * R, cudaMemcpyHostToDevice),
      "cudaMemcpy of the peer table");
}

}  // namespace

Error Buffer::Impl::usable(const char* op) const {
  if (destroyed)
    return Error(ErrorCode::kFailedState, std::string(op) + ": the Buffer was destroyed");
  if (!failure.ok())
    return Error(
        ErrorCode::kFailedState,
        std::string(op) + ": the Buffer failed earlier and cannot be used: " + failure.message());
  return Error::success();
}

Error Buffer::Impl::read_error_record() {
  if (error_host == nullptr) return Error::success();
  const auto status = reinterpret_cast<volatile int32_t*>(&error_host->status);
  if (*status != core::kRecordValid) return failure;
  std::atomic_thread_fence(std::memory_order_acquire);
  const core::DeviceErrorRecord rec = *error_host;
  std::ostringstream os;
  const auto op = static_cast<core::OpId>(rec.op);
  const auto stage = static_cast<core::WaitStage>(rec.stage);
  ErrorCode code = ErrorCode::kTimeout;
  os << core::op_name(op) << " on rank " << rec.rank;
  switch (stage) {
    case core::WaitStage::kInvalidExpertId:
      code = ErrorCode::kInvalidArgument;
      os << ": topk_idx: expected -1 or an expert id in [0, " << rec.limit << "), got " << rec.value
         << " at flat position " << rec.peer << " (detected on the GPU)";
      break;
    case core::WaitStage::kBufferTooSmall:
      code = ErrorCode::kBufferTooSmall;
      os << ": num_nvl_bytes: rank " << rec.peer << " needs " << rec.value
         << " rows in its receive area, which holds " << rec.limit
         << " rows: create the Buffer with more num_nvl_bytes";
      break;
    case core::WaitStage::kTooManyTokens:
      code = ErrorCode::kInvalidArgument;
      os << ": num_worst_tokens: expected at least the " << rec.value
         << " rows this rank receives, got " << rec.limit
         << " (rows past num_worst_tokens were dropped)";
      break;
    case core::WaitStage::kHostMatrixMismatch:
      code = ErrorCode::kInvalidArgument;
      os << ": handle.rank_prefix_matrix_host: expected the handle's rank_prefix_matrix, got "
         << rec.value << " rows for rank " << rec.peer << " where the device matrix has "
         << rec.limit << " (a stale host copy: no rank takes these rows as arrived)";
      break;
    case core::WaitStage::kRoutingMismatch:
      code = ErrorCode::kInvalidArgument;
      os << ": topk_idx: expected the routing of the handle's dispatch, got a token of rank "
         << rec.peer << " naming " << rec.limit << " experts on this rank where the dispatch"
         << " delivered " << rec.value << " of them";
      break;
    case core::WaitStage::kArgumentMismatch:
      code = ErrorCode::kInvalidArgument;
      os << ": rank " << rec.peer
         << " called with a different hidden size, dtype or top-k (low-latency: or N_max, "
            "expert count, FP8 options) than this rank"
         << " (call signatures " << std::hex << rec.value << " vs " << rec.limit << std::dec << ")";
      break;
    default:
      if (rec.reserved == 1) {
        os << " was aborted by the host while waiting for rank " << rec.peer;
      } else {
        os << " timed out after " << format_seconds(rec.waited_ns * 1e-9) << " (timeout "
           << format_seconds(options.timeout_seconds) << ") waiting for rank " << rec.peer;
      }
      os << " (stage: " << core::stage_name(stage) << ")";
      if (rec.peer_mask != 0) {
        os << "; ranks that did not answer:";
        for (int r = 0; r < 64; ++r)
          if (rec.peer_mask & (1ull << r)) os << " " << r;
      }
  }
  if (failure.ok()) {
    failure = Error(code, os.str());
    core::log_message(LogLevel::kError, failure.message());
  }
  return failure;
}

Error Buffer::Impl::release() {
  if (destroyed) return Error::success();
  destroyed = true;
  Error first;
  auto keep = [&first](Error e) {
    if (first.ok() && !e.ok()) first = std::move(e);
  };
  if (device >= 0) {
    runtime::DeviceGuard guard(device);
    for (size_t r = 0; r < peer_bases.size(); ++r)
      if (peer_opened[r])
        keep(cuda_error(cudaIpcCloseMemHandle(peer_bases[r]), "cudaIpcCloseMemHandle"));
    if (peer_bases_device)
      keep(cuda_error(cudaFree(peer_bases_device), "cudaFree of the peer table"));
    if (local_base) keep(cuda_error(cudaFree(local_base), "cudaFree of the buffer"));
    if (error_host) keep(cuda_error(cudaFreeHost(error_host), "cudaFreeHost of the error record"));
    if (notify_host)
      keep(cuda_error(cudaFreeHost(notify_host), "cudaFreeHost of the notify counts"));
    if (epochs) keep(cuda_error(cudaFree(epochs), "cudaFree of epoch counters"));
    runtime::free_trace(dispatch_trace);
    runtime::free_trace(combine_trace);
    runtime::free_trace(ll_dispatch_trace);
    runtime::free_trace(ll_combine_trace);
    if (handoff_event) keep(cuda_error(cudaEventDestroy(handoff_event), "cudaEventDestroy"));
    for (cudaStream_t cs : copy_streams)
      if (cs) keep(cuda_error(cudaStreamDestroy(cs), "cudaStreamDestroy of a copy stream"));
    for (cudaEvent_t ev : copy_joins)
      if (ev) keep(cuda_error(cudaEventDestroy(ev), "cudaEventDestroy of a copy event"));
    if (copy_fork) keep(cuda_error(cudaEventDestroy(copy_fork), "cudaEventDestroy"));
  }
  handoff_event = nullptr;
  copy_streams.clear();
  copy_joins.clear();
  copy_fork = nullptr;
  copy_tag = nullptr;
  peer_bases.clear();
  peer_opened.clear();
  peer_bases_device = nullptr;
  local_base = nullptr;
  error_host = nullptr;
  error_device = nullptr;
  notify_host = nullptr;
  notify_device = nullptr;
  block_counters = nullptr;
  epochs = nullptr;
  hook_epochs = nullptr;
  wait_failed = nullptr;
  control_host = nullptr;
  control_device = nullptr;
  return first;
}

Buffer::Buffer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Buffer::~Buffer() {
  if (impl_) (void)impl_->release();
}

Error Buffer::create(const BufferOptions& options, const AllGatherFn& all_gather_fn,
                     std::unique_ptr<Buffer>* out) {
  if (out == nullptr)
    return Error(ErrorCode::kInvalidArgument, "Buffer::create: out: expected a pointer, got null");
  out->reset();
  if (auto e = core::validate_buffer_options(options); !e.ok()) return e;
  if (!all_gather_fn)
    return Error(ErrorCode::kInvalidArgument,
                 "Buffer::create: all_gather: expected a callable, got none");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  const int32_t gpn = options.gpus_per_node > 0 ? options.gpus_per_node : options.num_ranks;
  impl->topo = Topology{options.rank, options.num_ranks, gpn};

  // Every rank takes part in the exchange even when its local setup failed, so that the others
  // learn why instead of waiting.
  runtime::RankInfo mine = runtime::make_rank_info(options);
  Error local = setup_local(*impl, &mine);
  mine.ready = local.ok() ? 1 : 0;
  if (!local.ok()) std::strncpy(mine.failure, local.message().c_str(), sizeof(mine.failure) - 1);
  std::vector<runtime::RankInfo> infos(options.num_ranks);
  if (auto e =
          runtime::all_gather(all_gather_fn, &mine, infos.data(), sizeof(mine), "rank records");
      !e.ok()) {
    (void)impl->release();
    return e;
  }
  if (!local.ok()) {
    (void)impl->release();
    return local;
  }
  Error checked = runtime::check_rank_infos(infos, options.rank);
  Error mapped = checked.ok() ? map_peers(*impl, infos) : Error::success();
  // Second round: every rank learns whether every other rank mapped its peers.
  const int32_t ok_mine = (checked.ok() && mapped.ok()) ? 1 : 0;
  std::vector<int32_t> ok_all(options.num_ranks, 0);
  if (auto e = runtime::all_gather(all_gather_fn, &ok_mine, ok_all.data(), sizeof(int32_t),
                                   "mapping status");
      !e.ok()) {
    (void)impl->release();
    return e;
  }
  if (!checked.ok() || !mapped.ok()) {
    (void)impl->release();
    return !checked.ok() ? checked : mapped;
  }
  for (int32_t r = 0; r < options.num_ranks; ++r) {
    if (!ok_all[r]) {
      (void)impl->release();
      return Error(ErrorCode::kBootstrap, "Buffer::create: rank " + std::to_string(r) +
                                              " could not map its peers' buffers (see its error)");
    }
  }
  if (core::log_enabled(LogLevel::kInfo)) {
    std::ostringstream os;
    os << "rank " << options.rank << "/" << options.num_ranks << " on device " << impl->device
       << " (" << infos[options.rank].pci_bus_id << "), gpus_per_node " << gpn << ", buffer "
       << impl->layout.total_bytes << " bytes (signal " << impl->layout.signal_bytes << ", nvl "
       << options.num_nvl_bytes << ", rdma " << options.num_rdma_bytes << "), timeout "
       << format_seconds(options.timeout_seconds);
    core::log_message(LogLevel::kInfo, os.str());
  }
  out->reset(new Buffer(std::move(impl)));
  return Error::success();
}

Error Buffer::destroy() {
  return impl_->release();
}

const Topology& Buffer::topology() const {
  return impl_->topo;
}
const BufferOptions& Buffer::options() const {
  return impl_->options;
}
int32_t Buffer::device() const {
  return impl_->device;
}

void* Buffer::local_region(bool low_latency) const {
  if (impl_->local_base == nullptr) return nullptr;
  return impl_->local_base + (low_latency ? impl_->layout.rdma_offset : impl_->layout.nvl_offset);
}

void* Buffer::peer_region(int32_t rank, bool low_latency) const {
  if (rank < 0 || rank >= static_cast<int32_t>(impl_->peer_bases.size())) return nullptr;
  return impl_->peer_bases[rank] +
         (low_latency ? impl_->layout.rdma_offset : impl_->layout.nvl_offset);
}

Error Buffer::barrier(StreamHandle stream) {
  if (auto e = impl_->usable("barrier"); !e.ok()) return e;
  if (auto e = impl_->read_error_record(); !e.ok()) return e;
  runtime::DeviceGuard guard(impl_->device);
  kernels::BarrierParams p;
  p.peer_bases = impl_->peer_bases_device;
  p.signal_offset = impl_->layout.signal_offset;
  p.num_ranks = impl_->topo.num_ranks;
  p.epoch_counter = impl_->epochs + 0;
  p.wait = impl_->wait_context(core::OpId::kBarrier);
  return cuda_error(kernels::launch_barrier(p, static_cast<cudaStream_t>(stream)),
                    "barrier kernel launch");
}

Error Buffer::check_async_error() {
  if (impl_->destroyed) return impl_->usable("check_async_error");
  return impl_->read_error_record();
}

void Buffer::abort() {
  if (impl_->control_host == nullptr) return;
  reinterpret_cast<volatile int32_t*>(&impl_->control_host->abort_flag)[0] = 1;
}

Error Buffer::stream_wait(StreamHandle waiter, StreamHandle waited) {
  if (impl_->destroyed) return impl_->usable("stream_wait");
  runtime::DeviceGuard guard(impl_->device);
  if (impl_->handoff_event == nullptr)
    if (auto e = cuda_error(cudaEventCreateWithFlags(&impl_->handoff_event, cudaEventDisableTiming),
                            "stream_wait: cudaEventCreateWithFlags");
        !e.ok())
      return e;
  // One event serves every call: a wait uses the record most recent when it is enqueued.
  if (auto e = cuda_error(cudaEventRecord(impl_->handoff_event, static_cast<cudaStream_t>(waited)),
                          "stream_wait: cudaEventRecord");
      !e.ok())
    return e;
  return cuda_error(cudaStreamWaitEvent(static_cast<cudaStream_t>(waiter), impl_->handoff_event, 0),
                    "stream_wait: cudaStreamWaitEvent");
}

Error Buffer::synchronize(StreamHandle stream) {
  if (impl_->destroyed) return impl_->usable("synchronize");
  runtime::DeviceGuard guard(impl_->device);
  const auto start = std::chrono::steady_clock::now();
  // The kernels give up after the timeout themselves; the host waits a little longer so that
  // it reports their record rather than its own.
  const double limit = impl_->options.timeout_seconds * 1.5 + 1.0;
  bool aborted = false;
  while (true) {
    const cudaError_t st = cudaStreamQuery(static_cast<cudaStream_t>(stream));
    if (st == cudaSuccess) break;
    if (st != cudaErrorNotReady) return cuda_error(st, "synchronize: cudaStreamQuery");
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!aborted && waited > limit) {
      abort();  // make every bounded wait give up so the stream drains
      aborted = true;
    }
    if (aborted && waited > limit + 10.0) {
      impl_->failure = Error(ErrorCode::kTimeout,
                             "synchronize on rank " + std::to_string(impl_->topo.rank) +
                                 ": the stream did not finish within " + format_seconds(waited) +
                                 " even after an abort (a kernel outside epcomm's bounded waits?)");
      return impl_->failure;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.01 ? 5 : 200));
  }
  runtime::report_dispatch_trace(impl_->dispatch_trace, impl_->topo.rank);
  runtime::report_combine_trace(impl_->combine_trace, impl_->topo.rank);
  runtime::report_low_latency_trace(impl_->ll_dispatch_trace, impl_->topo.rank,
                                    "low_latency_dispatch");
  runtime::report_low_latency_trace(impl_->ll_combine_trace, impl_->topo.rank,
                                    "low_latency_combine");
  return impl_->read_error_record();
}

}  // namespace epcomm
