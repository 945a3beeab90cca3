// Normal combine whose rows the copy engines send (docs/perf.md, v23). After a dispatch the rows a
// rank returns to each source are contiguous on both sides (its receive rows from s, and s's
// combine area for it), so each source's rows go as a few large peer copies, with no SM held;
// the combine kernel then only reduces. Needs the handle's host copy of rank_prefix_matrix to
// size the copies (a call with num_worst_tokens has none and uses SM stores).
#pragma once

#include <cuda_runtime.h>

#include "epcomm/buffer.h"
#include "epcomm/dispatch.h"
#include "kernels/intranode_combine.h"

namespace epcomm::runtime {

// Sequence on `stream`: the copy-start kernel (checks, waits for "consumed", the tag word), a
// fork to one stream per peer, per peer the weights and its rows in `chunks` chunks, each
// followed by a 4-byte copy of the tag word onto the chunk's first-row tag, the combine kernel on
// `stream` (concurrently; every warp reduces, waiting on the chunk tags), and a join, so later
// work on `stream` sees the copies done. `p` is the combine kernel's parameters as
// Buffer::combine built them.
Error combine_by_copy_engines(Buffer::Impl& impl, const CombineArgs& args, kernels::CombineParams p,
                              int chunks, int num_sms, cudaStream_t stream);

}  // namespace epcomm::runtime
