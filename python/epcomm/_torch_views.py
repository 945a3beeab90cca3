"""torch tensor <-> C ABI tensor views, and the all-gather adapters (torch.distributed, mpi4py).
torch is imported by the callers; this module only touches tensors it is given."""
import ctypes
import operator
import struct

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


# epcomm_tensor_t packed in one call: data, dtype, ndim, shape[4], strides[4], device kind and
# index (88 bytes, the c.Tensor layout; a test checks both agree). Building a c.Tensor with its
# two arrays (c.tensor) costs ~7x more, and every call writes about ten views (docs/perf.md,
# Python layer).
_PACK = struct.Struct("<Qii4q4qii")
_OFFSETS = {}  # (struct type, field path) -> byte offset of that Tensor field


def _field(struct_type, path):
    """(byte offset, ctypes type) of the field `path` ("x", "handle.send_slot") of struct_type."""
    offset, t = 0, struct_type
    for name in path.split("."):
        offset += getattr(t, name).offset
        t = dict(t._fields_)[name]
    return offset, t


def _offset(struct_type, path):
    key = (struct_type, path)
    offset = _OFFSETS.get(key)
    if offset is None:
        offset, t = _field(struct_type, path)
        if t is not c.Tensor:
            raise TypeError(f"{struct_type.__name__}.{path} is not a tensor field")
        _OFFSETS[key] = offset
    return offset


def _address_offset(struct_type, path):
    """Where the address of `path` lies: the data field of a tensor field, or a pointer field."""
    offset, t = _field(struct_type, path)
    if t is not c.Tensor and t is not ctypes.c_void_p:
        raise TypeError(f"{struct_type.__name__}.{path} is neither a tensor nor a pointer field")
    return offset  # epcomm_tensor_t's data pointer is its first field


def put(args, path, t):
    """Writes the C view of torch tensor `t` (absent for None) into the tensor field `path`
    ("x", "handle.send_slot") of the ctypes struct `args`. The tensor must outlive the call."""
    offset = _OFFSETS.get((type(args), path))
    if offset is None:
        offset = _offset(type(args), path)
    _put_at(args, offset, t, path)


def put_present(args, pairs):
    """put() for each (path, tensor) pair whose tensor is not None. For structs fresh from
    c.init, whose tensor fields are absent already, so skipping None saves a pack per field."""
    for path, t in pairs:
        if t is not None:
            put(args, path, t)


_VIEW_BYTES = _PACK.size


def put_group(args, path, tensors):
    """Writes the views of `tensors` into consecutive tensor fields of `args` starting at `path`
    (a handle's tensors, in the handle struct's order). The packed views are cached on
    tensors[0] together with the others, so a handle passed again (cached dispatch, combine)
    costs one copy instead of a pack per tensor. A tensor's address, shape and strides are taken
    as fixed for its life (only resize_ or set_ would change them; handles are not resized)."""
    offset = _OFFSETS.get((type(args), path))
    if offset is None:
        offset = _offset(type(args), path)
    blob = cached_group(tensors)
    if blob is not None:
        ctypes.memmove(ctypes.addressof(args) + offset, blob, len(blob))
        return
    first, rest = tensors[0], tuple(tensors[1:])
    for i, t in enumerate(tensors):
        _put_at(args, offset + i * _VIEW_BYTES, t, f"{path} (+{i})")
    # The others only: holding tensors[0] from its own attribute would make a reference cycle,
    # which frees GPU memory only when the cycle collector runs.
    try:
        first._epcomm_views = (rest, ctypes.string_at(ctypes.addressof(args) + offset, len(tensors) * _VIEW_BYTES))
    except AttributeError:  # a tensor type without instance attributes: no cache, same result
        pass


def cached_group(tensors):
    """The views of `tensors` that put_group packed and cached on tensors[0], as bytes (the
    group's consecutive tensor fields); None when they are not cached or tensors[0] was grouped
    with other tensors."""
    cached = getattr(tensors[0], "_epcomm_views", None)
    if cached is None:
        return None
    others, blob = cached
    if len(others) == len(tensors) - 1 and all(map(operator.is_, others, tensors[1:])):
        return blob
    return None


_POINTER = struct.Struct("<Q")  # the data field, first in epcomm_tensor_t


class CallTemplate:
    """An argument struct prepared once for calls that differ only in their tensors' addresses.

    Built from a struct filled the general way (tensor views and scalars), just before its C call;
    make() copies it and writes the given addresses into the data fields of `paths` (tensor fields)
    or into `paths` themselves (pointer fields: the stream handoffs). The caller keys templates by
    everything else a view holds (shapes, strides, dtypes, devices) and by every scalar it set, so
    a template is reused only where the general path would write the same bytes apart from those
    addresses. Per call that is one copy and one 8-byte write per address instead of a view packed
    from torch attributes per tensor (docs/perf.md, Python layer).

    `outputs` holds a stand-in for each contiguous output the call allocates (a one-element tensor
    of its dtype and device, expanded to its shape): torch.empty_like(stand_in) allocates the same
    contiguous tensor as new_empty(shape) without parsing a shape (the caller checks the strides
    in python/tests/test_call_templates.py)."""

    __slots__ = ("_type", "_blob", "_offsets", "outputs", "strided", "_group_path", "_pre", "_post")

    def __init__(self, args, paths, outputs=(), strided=None, group=None):
        self._type = type(args)
        self._blob = bytes(memoryview(args).cast("B"))
        self._offsets = tuple(_address_offset(self._type, p) for p in paths)
        self.outputs = tuple(t.new_empty(1).expand(t.shape) for t in outputs)
        # An output that is not contiguous: (a zero-size tensor of its dtype and device, shape,
        # strides) for new_empty_strided.
        self.strided = None if strided is None else (strided.new_empty(0), tuple(strided.shape), strided.stride())
        # group = (path, count): that many consecutive tensor fields from path (a handle's
        # views), which make() writes from the tensors it is given; the struct's bytes around
        # them are kept so that views put_group cached go in with the one copy.
        self._group_path = self._pre = self._post = None
        if group is not None:
            start = _offset(self._type, group[0])
            self._group_path = group[0]
            self._pre, self._post = self._blob[:start], self._blob[start + group[1] * _VIEW_BYTES:]

    def make(self, addresses, group=None):
        """A copy of the template with addresses[i] (an int, 0 for an absent tensor or stream)
        written at paths[i] and, for a template with a group, the views of the tensors `group`
        in the group's fields (put_group's cached views where it has them)."""
        blob = None if group is None else cached_group(group)
        args = self._type.from_buffer_copy(self._blob if blob is None else self._pre + blob + self._post)
        pack = _POINTER.pack_into
        for offset, address in zip(self._offsets, addresses):
            pack(args, offset, address)
        if group is not None and blob is None:
            put_group(args, self._group_path, group)
        return args


def put_host_matrix(args, path, matrix, n):
    """Writes the view of `matrix`, a ctypes array of n * n int32 in host memory, into the
    tensor field `path` (the handle's rank_prefix_matrix_host)."""
    offset = _OFFSETS.get((type(args), path))
    if offset is None:
        offset = _offset(type(args), path)
    _PACK.pack_into(args, offset, ctypes.addressof(matrix), c.DTYPE_INT32, 2, n, n, 0, 0, n, 1, 0, 0,
                    c.DEVICE_CPU, 0)


def _put_at(args, offset, t, name):
    """Writes the view of `t` at byte `offset` of `args` (`name`: the field, for errors). Written for speed (it runs ~10 times
    per call): one branch per dimension count, so that no tuples are built (1 us instead of
    3.4 us per view on the CPU)."""
    if t is None:
        _PACK.pack_into(args, offset, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, c.DEVICE_CUDA, 0)
        return
    code = _CODES.get(t.dtype) if _CODES is not None else None
    if code is None:
        code = dtype_code(t)  # builds the map on first use; raises TypeError for other dtypes
    d, st, ptr, device = t.shape, t.stride(), t.data_ptr(), t.get_device()  # device -1: CPU
    kind, index = (c.DEVICE_CUDA, device) if device >= 0 else (c.DEVICE_CPU, 0)
    n = len(d)
    if n == 2:
        _PACK.pack_into(args, offset, ptr, code, 2, d[0], d[1], 0, 0, st[0], st[1], 0, 0, kind, index)
    elif n == 1:
        _PACK.pack_into(args, offset, ptr, code, 1, d[0], 0, 0, 0, st[0], 0, 0, 0, kind, index)
    elif n == 3:
        _PACK.pack_into(args, offset, ptr, code, 3, d[0], d[1], d[2], 0, st[0], st[1], st[2], 0, kind, index)
    elif n == 4:
        _PACK.pack_into(args, offset, ptr, code, 4, d[0], d[1], d[2], d[3], st[0], st[1], st[2], st[3], kind,
                        index)
    elif n == 0:
        _PACK.pack_into(args, offset, ptr, code, 0, 0, 0, 0, 0, 0, 0, 0, 0, kind, index)
    else:
        raise ValueError(f"{name}: expected a tensor of at most 4 dimensions, got {n}")


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
