// Topology: where a rank sits in the EP group.
#pragma once

#include <cstdint>

namespace epcomm {

struct Topology {
  int32_t rank = 0;
  int32_t num_ranks = 1;
  int32_t gpus_per_node = 1;  // ranks per node; never assumed to be 8

  int32_t node() const { return rank / gpus_per_node; }
  int32_t local_rank() const { return rank % gpus_per_node; }
  int32_t num_nodes() const { return (num_ranks + gpus_per_node - 1) / gpus_per_node; }
  bool single_node() const { return num_ranks <= gpus_per_node; }
};

}  // namespace epcomm
