"""torch tensor <-> C ABI tensor views, and the all-gather adapters (torch.distributed, mpi4py).
torch is imported by the callers; this module only touches tensors it is given."""
import ctypes

from epcomm import _capi as c


def dtype_code(t):
    import torch

    codes = {
        torch.bfloat16: c.DTYPE_BFLOAT16,
        torch.float8_e4m3fn: c.DTYPE_FLOAT8_E4M3,
        torch.float32: c.DTYPE_FLOAT32,
        torch.int32: c.DTYPE_INT32,
        torch.int64: c.DTYPE_INT64,
        torch.bool: c.DTYPE_BOOL,
    }
    if t.dtype not in codes:
        raise TypeError(f"expected a tensor of bfloat16, float8_e4m3fn, float32, int32, int64 or bool, got {t.dtype}")
    return codes[t.dtype]


def view(t):
    """The C view of a torch tensor (absent for None). The tensor must outlive the call."""
    if t is None:
        return c.absent()
    kind = c.DEVICE_CUDA if t.is_cuda else c.DEVICE_CPU
    return c.tensor(t.data_ptr(), dtype_code(t), list(t.shape), list(t.stride()), kind,
                    t.device.index if t.is_cuda else 0)


def torch_all_gather(group):
    """All-gather of bytes over a torch.distributed group (NCCL or Gloo)."""
    import torch.distributed as dist

    @c.ALL_GATHER_FN
    def gather(mine, all_, nbytes, user):
        try:
            out = [None] * dist.get_world_size(group)
            dist.all_gather_object(out, ctypes.string_at(mine, nbytes), group=group)
            for r, blob in enumerate(out):
                if len(blob) != nbytes:
                    return 2
                ctypes.memmove(all_ + r * nbytes, blob, nbytes)
            return 0
        except Exception:  # reported by the library as a bootstrap error
            return 1

    return gather


def mpi_all_gather(comm):
    """All-gather of bytes over an mpi4py communicator."""

    @c.ALL_GATHER_FN
    def gather(mine, all_, nbytes, user):
        try:
            out = comm.allgather(ctypes.string_at(mine, nbytes))
            for r, blob in enumerate(out):
                ctypes.memmove(all_ + r * nbytes, blob, nbytes)
            return 0
        except Exception:
            return 1

    return gather
