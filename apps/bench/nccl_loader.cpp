#include "nccl_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <vector>

namespace epcomm::bench {

bool Nccl::load(std::string* error) {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("EPCOMM_NCCL_LIBRARY")) candidates.push_back(env);
  candidates.push_back("libnccl.so.2");
  for (const char* py :
       {"/opt/torch/.venv/lib/python3.12/site-packages", "/usr/local/lib/python3.12/dist-packages",
        "/usr/lib/python3/dist-packages"})
    candidates.push_back(std::string(py) + "/nvidia/nccl/lib/libnccl.so.2");
  candidates.push_back("/usr/local/cuda/lib64/libnccl.so.2");
  for (const auto& path : candidates) {
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_) break;
  }
  if (!handle_) {
    *error = "libnccl.so.2 not found (set EPCOMM_NCCL_LIBRARY)";
    return false;
  }
  auto sym = [this](const char* name) { return dlsym(handle_, name); };
  get_unique_id = reinterpret_cast<decltype(get_unique_id)>(sym("ncclGetUniqueId"));
  comm_init_rank = reinterpret_cast<decltype(comm_init_rank)>(sym("ncclCommInitRank"));
  comm_destroy = reinterpret_cast<decltype(comm_destroy)>(sym("ncclCommDestroy"));
  group_start = reinterpret_cast<decltype(group_start)>(sym("ncclGroupStart"));
  group_end = reinterpret_cast<decltype(group_end)>(sym("ncclGroupEnd"));
  send = reinterpret_cast<decltype(send)>(sym("ncclSend"));
  recv = reinterpret_cast<decltype(recv)>(sym("ncclRecv"));
  get_error_string = reinterpret_cast<decltype(get_error_string)>(sym("ncclGetErrorString"));
  if (!get_unique_id || !comm_init_rank || !comm_destroy || !group_start || !group_end || !send ||
      !recv) {
    *error = "libnccl.so.2 lacks an expected symbol";
    dlclose(handle_);
    handle_ = nullptr;
    return false;
  }
  return true;
}

}  // namespace epcomm::bench
