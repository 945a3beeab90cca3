#include "runtime/bootstrap.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace epcomm::runtime {
namespace {

void copy_string(char* dst, size_t size, const std::string& src) {
  std::memset(dst, 0, size);
  std::memcpy(dst, src.data(), std::min(size - 1, src.size()));
}

std::string read_boot_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  return id;
}

template <class T>
std::string to_text(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

RankInfo make_rank_info(const BufferOptions& o) {
  RankInfo info;
  std::memset(&info, 0, sizeof(info));
  info.magic = kRankInfoMagic;
  info.version = kRankInfoVersion;
  info.struct_size = sizeof(RankInfo);
  info.rank = o.rank;
  info.num_ranks = o.num_ranks;
  info.gpus_per_node = o.gpus_per_node;
  info.num_nvl_bytes = o.num_nvl_bytes;
  info.num_rdma_bytes = o.num_rdma_bytes;
  info.low_latency_mode = o.low_latency_mode ? 1 : 0;
  info.timeout_seconds = o.timeout_seconds;
  char host[64] = {};
  gethostname(host, sizeof(host) - 1);
  copy_string(info.hostname, sizeof(info.hostname), host);
  copy_string(info.boot_id, sizeof(info.boot_id), read_boot_id());
  info.device = -1;
  return info;
}

Error all_gather(const AllGatherFn& fn, const void* mine, void* all, size_t bytes,
                 const char* what) {
  try {
    fn(mine, all, bytes);
  } catch (const std::exception& e) {
    return Error(ErrorCode::kBootstrap,
                 std::string("Buffer::create: all-gather of ") + what + " failed: " + e.what());
  } catch (...) {
    return Error(ErrorCode::kBootstrap, std::string("Buffer::create: all-gather of ") + what +
                                            " failed (unknown exception)");
  }
  return Error::success();
}

Error check_rank_infos(const std::vector<RankInfo>& infos, int32_t my_rank) {
  const char* op = "Buffer::create";
  for (size_t r = 0; r < infos.size(); ++r) {
    const RankInfo& i = infos[r];
    if (i.magic != kRankInfoMagic || i.version != kRankInfoVersion ||
        i.struct_size != sizeof(RankInfo))
      return Error(ErrorCode::kBootstrap,
                   std::string(op) + ": all-gather entry " + std::to_string(r) +
                       " is not an epcomm v" + std::to_string(kRankInfoVersion) +
                       " rank record (magic " + to_text(i.magic) + ", version " +
                       to_text(i.version) + ", size " + to_text(i.struct_size) +
                       "): does every rank run the same epcomm build?");
    if (i.rank != static_cast<int32_t>(r))
      return Error(ErrorCode::kBootstrap,
                   std::string(op) + ": all-gather entry " + std::to_string(r) + " holds rank " +
                       std::to_string(i.rank) + "'s record: expected entries ordered by rank");
  }
  const RankInfo& a = infos[0];
  for (size_t r = 1; r < infos.size(); ++r) {
    const RankInfo& b = infos[r];
    auto differ = [&](const char* field, const std::string& va, const std::string& vb) {
      return Error(ErrorCode::kInvalidArgument,
                   std::string(op) + ": configuration differs between ranks: " + field + " is " +
                       va + " on rank 0 but " + vb + " on rank " + std::to_string(r));
    };
    if (a.num_ranks != b.num_ranks)
      return differ("num_ranks", to_text(a.num_ranks), to_text(b.num_ranks));
    if (a.gpus_per_node != b.gpus_per_node)
      return differ("gpus_per_node", to_text(a.gpus_per_node), to_text(b.gpus_per_node));
    if (a.num_nvl_bytes != b.num_nvl_bytes)
      return differ("num_nvl_bytes", to_text(a.num_nvl_bytes), to_text(b.num_nvl_bytes));
    if (a.num_rdma_bytes != b.num_rdma_bytes)
      return differ("num_rdma_bytes", to_text(a.num_rdma_bytes), to_text(b.num_rdma_bytes));
    if (a.low_latency_mode != b.low_latency_mode)
      return differ("low_latency_mode", to_text(a.low_latency_mode), to_text(b.low_latency_mode));
    if (a.timeout_seconds != b.timeout_seconds)
      return differ("timeout_seconds", to_text(a.timeout_seconds), to_text(b.timeout_seconds));
  }
  for (size_t r = 0; r < infos.size(); ++r)
    if (!infos[r].ready)
      return Error(ErrorCode::kBootstrap, std::string(op) + ": rank " + std::to_string(r) +
                                              " failed to set up its buffer: " + infos[r].failure);
  for (size_t r = 0; r < infos.size(); ++r)
    if (std::strcmp(infos[r].hostname, infos[my_rank].hostname) != 0 ||
        std::strcmp(infos[r].boot_id, infos[my_rank].boot_id) != 0)
      return Error(ErrorCode::kNotSupported,
                   std::string(op) + ": multi-node is not supported yet: rank " +
                       std::to_string(my_rank) + " runs on host '" + infos[my_rank].hostname +
                       "' but rank " + std::to_string(r) + " on host '" + infos[r].hostname + "'");
  return Error::success();
}

}  // namespace epcomm::runtime
