"""torch tensor <-> C ABI tensor views, and the all-gather adapters (torch.distributed, mpi4py).
torch is imported by the callers; this module only touches tensors it is given."""
import ctypes

from epcomm import _capi as c


_CODES = None


def _codes():
    global _CODES
    if _CODES is None:
        import torch

        _CODES = {
            torch.bfloat16: c.DTYPE_BFLOAT16,
            torch.float8_e4m3fn: c.DTYPE_FLOAT8_E4M3,
            torch.float32: c.DTYPE_FLOAT32,
            torch.int32: c.DTYPE_INT32,
            torch.int64: c.DTYPE_INT64,
            torch.bool: c.DTYPE_BOOL,
        }
    return _CODES


def dtype_code(t):
    code = _codes().get(t.dtype)
    if code is None:
        raise TypeError(f"expected a tensor of bfloat16, float8_e4m3fn, float32, int32, int64 or bool, got {t.dtype}")
    return code


def view(t):
    """The C view of a torch tensor (absent for None). The tensor must outlive the call.
    Runs for every tensor of every call: one attribute read each, no torch.device objects."""
    if t is None:
        return c.absent()
    device = t.get_device()  # -1 for CPU tensors
    return c.tensor(t.data_ptr(), dtype_code(t), t.shape, t.stride(),
                    c.DEVICE_CUDA if device >= 0 else c.DEVICE_CPU, max(device, 0))


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
                if len(blob) != nbytes:  # ranks disagree on the message: a bootstrap error
                    return 2
                ctypes.memmove(all_ + r * nbytes, blob, nbytes)
            return 0
        except Exception:
            return 1

    return gather
