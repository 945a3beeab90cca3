"""The ctypes layer over the C ABI: what needs no GPU (CPU-only CI runs all of it).

Run with EPCOMM_LIBRARY pointing at a built libepcomm.so (scripts/test.sh does).
"""
import ctypes
import os
import re

import pytest

import epcomm
from epcomm import _capi as c
from epcomm import _torch_views as tv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pyproject_version():
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def test_library_version_matches_the_package():
    assert epcomm.version() == _pyproject_version()


def test_struct_mirrors_match_the_compiled_abi():
    assert c.check_struct_sizes() == {}


def test_init_sets_struct_size_and_defaults():
    args = c.init(c.DispatchArgs)
    assert args.struct_size == ctypes.sizeof(c.DispatchArgs)
    assert args.expert_alignment == 1
    assert args.x.ndim == -1  # absent
    assert args.config.num_sms == 20
    ll = c.init(c.LowLatencyDispatchArgs)
    assert ll.use_fp8 == 1 and ll.hook == -1
    args.expert_alignment = 5  # later inits copy the C defaults, not this instance
    assert c.init(c.DispatchArgs).expert_alignment == 1


def test_low_latency_size_hint_matches_the_cpp_api():
    lib = c.library()
    assert lib.epcomm_get_low_latency_buffer_size_hint(128, 7168, 4, 288) == 1631584256  # 1556 MiB; the pre-reduced combine's regions added 28 MiB (perf.md LL v14)
    assert lib.epcomm_get_low_latency_buffer_size_hint(128, 7168, 4, 287) == 0


def _gather_copy():
    @c.ALL_GATHER_FN
    def gather(mine, all_, nbytes, user):
        ctypes.memmove(all_, mine, nbytes)
        return 0

    return gather


def _create(options, gather):
    handle = ctypes.c_void_p()
    status = c.library().epcomm_buffer_create(ctypes.byref(options), gather, None, ctypes.byref(handle))
    return status, handle


def test_bad_rank_raises_value_error_naming_argument_expected_and_actual():
    o = c.init(c.BufferOptions)
    o.num_ranks, o.rank = 2, 5
    status, handle = _create(o, _gather_copy())
    with pytest.raises(ValueError, match=r"rank: expected a value in \[0, 2\), got 5"):
        c.check(status)
    assert handle.value is None


def test_multi_node_raises_not_implemented():
    o = c.init(c.BufferOptions)
    o.num_ranks, o.gpus_per_node = 4, 2
    status, _ = _create(o, _gather_copy())
    with pytest.raises(NotImplementedError, match="multi-node is not supported yet"):
        c.check(status)


def test_struct_size_too_small_is_rejected():
    o = c.init(c.BufferOptions)
    o.struct_size = 8
    status, _ = _create(o, _gather_copy())
    with pytest.raises(ValueError, match="struct_size"):
        c.check(status)


def test_failing_all_gather_is_a_bootstrap_error():
    @c.ALL_GATHER_FN
    def failing(mine, all_, nbytes, user):
        return 3

    status, _ = _create(c.init(c.BufferOptions), failing)
    with pytest.raises(c.EpcommError, match="all-gather callback returned 3") as info:
        c.check(status)
    assert info.value.status == c.BOOTSTRAP


def test_one_rank_buffer_without_a_gpu_is_a_clean_cuda_error_or_works_with_one():
    status, handle = _create(c.init(c.BufferOptions), _gather_copy())
    if status == c.SUCCESS:  # a GPU machine
        assert c.library().epcomm_buffer_destroy(handle) == c.SUCCESS
    else:
        assert status == c.CUDA_ERROR
        with pytest.raises(c.EpcommError, match="cuda"):
            c.check(status)


def test_calls_on_a_null_buffer_fail_cleanly():
    lib = c.library()
    with pytest.raises(ValueError, match="epcomm_buffer_barrier: buffer"):
        c.check(lib.epcomm_buffer_barrier(None, None))
    args = c.init(c.DispatchArgs)
    with pytest.raises(ValueError):
        c.check(lib.epcomm_dispatch(None, ctypes.byref(args), None))
    assert lib.epcomm_buffer_destroy(None) == c.SUCCESS
    ptr, h = ctypes.c_void_p(), c.LowLatencyHandle()
    with pytest.raises(ValueError, match="epcomm_get_next_low_latency_combine_buffer: buffer"):
        c.check(lib.epcomm_get_next_low_latency_combine_buffer(None, ctypes.byref(h), ctypes.byref(ptr)))


def test_tensor_helper_builds_row_major_strides():
    t = c.tensor(1234, c.DTYPE_BFLOAT16, [3, 4, 5])
    assert list(t.strides)[:3] == [20, 5, 1]
    assert t.ndim == 3 and t.device_kind == c.DEVICE_CUDA


def _reference_view(t):
    """The C view of a tensor built field by field with c.tensor: what put() must write."""
    if t is None:
        return c.absent()
    device = t.get_device()
    return c.tensor(t.data_ptr(), tv._codes()[t.dtype], t.shape, t.stride(),
                    c.DEVICE_CUDA if device >= 0 else c.DEVICE_CPU, max(device, 0))


class _FakeTensor:
    """What put() and view() read from a torch tensor, without torch."""

    def __init__(self, ptr, dtype, shape, strides, device):
        self.dtype, self.shape, self._ptr, self._strides, self._device = dtype, tuple(shape), ptr, tuple(strides), device

    def data_ptr(self):
        return self._ptr

    def stride(self):
        return self._strides

    def get_device(self):
        return self._device


def test_put_writes_the_same_bytes_as_view_into_nested_fields(monkeypatch):
    monkeypatch.setattr(tv, "_CODES", {"bf16": c.DTYPE_BFLOAT16, "i32": c.DTYPE_INT32})
    assert tv._PACK.size == ctypes.sizeof(c.Tensor)
    cases = [("x", _FakeTensor(0x1000, "bf16", (4, 7168), (7168, 1), 1)),
             ("handle.send_slot", _FakeTensor(0x2000, "i32", (4, 3), (1, 4), 0)),
             ("topk_weights", None),
             ("handle.recv_src_idx", _FakeTensor(0x3000, "i32", (5,), (1,), -1)),
             ("recv_x", _FakeTensor(0x4000, "bf16", (2, 3, 4, 5), (60, 20, 5, 1), 0))]
    for path, t in cases:
        a, b = c.init(c.DispatchArgs), c.init(c.DispatchArgs)
        tv.put(a, path, t)
        holder, name = (b.handle, path.split(".")[1]) if "." in path else (b, path)
        setattr(holder, name, _reference_view(t))
        assert bytes(a) == bytes(b), path
    with pytest.raises(ValueError, match="recv_x: expected a tensor of at most 4 dimensions, got 5"):
        tv.put(c.init(c.DispatchArgs), "recv_x", _FakeTensor(0x4000, "bf16", (1,) * 5, (1,) * 5, 0))
    with pytest.raises(TypeError, match="not a tensor field"):
        tv.put(c.init(c.DispatchArgs), "num_experts", None)


def test_put_matches_view_for_torch_tensors_of_every_rank():
    torch = pytest.importorskip("torch", reason="torch is not installed (CPU-only CI)")
    cases = {"x": torch.zeros(4, 7168, dtype=torch.bfloat16), "x_scales": torch.empty(3, 56, 8).transpose(1, 2),
             "handle.recv_src_idx": torch.zeros(5, dtype=torch.int32),
             "recv_x": torch.zeros(2, 3, 4, 5, dtype=torch.float8_e4m3fn), "recv_topk_weights": torch.tensor(3.0),
             "topk_weights": None}
    for path, t in cases.items():
        a, b = c.init(c.DispatchArgs), c.init(c.DispatchArgs)
        tv.put(a, path, t)
        holder, name = (b.handle, path.split(".")[1]) if "." in path else (b, path)
        setattr(holder, name, _reference_view(t))
        assert bytes(a) == bytes(b), path


def _put_each(struct_type, pairs):
    a = c.init(struct_type)
    for path, t in pairs:
        tv.put(a, path, t)
    return bytes(a)


def test_put_group_writes_what_put_writes_and_caches_on_the_first_tensor(monkeypatch):
    monkeypatch.setattr(tv, "_CODES", {"bf16": c.DTYPE_BFLOAT16, "i32": c.DTYPE_INT32, "bool": c.DTYPE_BOOL})
    prefix = _FakeTensor(0x1000, "i32", (4, 4), (4, 1), 0)
    src = _FakeTensor(0x2000, "i32", (9,), (1,), 0)
    in_rank = _FakeTensor(0x3000, "bool", (5, 4), (4, 1), 0)
    slot = _FakeTensor(0x4000, "i32", (5, 4), (1, 5), 0)
    paths = ["handle.rank_prefix_matrix", "handle.recv_src_idx", "handle.is_token_in_rank", "handle.send_slot"]
    for struct_type in (c.DispatchArgs, c.CombineArgs):  # the handle sits at another offset in each
        want = _put_each(struct_type, list(zip(paths, (prefix, src, in_rank, slot))))
        first = c.init(struct_type)
        tv.put_group(first, "handle.rank_prefix_matrix", (prefix, src, in_rank, slot))
        assert bytes(first) == want, struct_type.__name__
        assert prefix._epcomm_views[0] == (src, in_rank, slot)  # the first tensor holds the others only
        again = c.init(struct_type)  # from the cache
        tv.put_group(again, "handle.rank_prefix_matrix", (prefix, src, in_rank, slot))
        assert bytes(again) == want, struct_type.__name__
    # Another tensor in the group (same first tensor) is packed anew, not taken from the cache.
    other = _FakeTensor(0x5000, "bool", (6, 4), (4, 1), 0)
    a = c.init(c.CombineArgs)
    tv.put_group(a, "handle.rank_prefix_matrix", (prefix, src, other, slot))
    assert bytes(a) == _put_each(c.CombineArgs, list(zip(paths, (prefix, src, other, slot))))
    # The low-latency handle, inside the args and on its own.
    info, ranges = _FakeTensor(0x6000, "i32", (2, 8), (8, 1), 0), _FakeTensor(0x7000, "i32", (2, 4), (4, 1), 0)
    for struct_type, path in ((c.LowLatencyCombineArgs, "handle."), (c.LowLatencyHandle, "")):
        for _ in range(2):
            a = c.init(struct_type) if struct_type is not c.LowLatencyHandle else c.LowLatencyHandle()
            tv.put_group(a, path + "src_info", (info, ranges))
            b = c.init(struct_type) if struct_type is not c.LowLatencyHandle else c.LowLatencyHandle()
            tv.put(b, path + "src_info", info)
            tv.put(b, path + "layout_range", ranges)
            assert bytes(a) == bytes(b), struct_type.__name__


def test_put_present_skips_absent_tensors_of_a_fresh_struct(monkeypatch):
    monkeypatch.setattr(tv, "_CODES", {"bf16": c.DTYPE_BFLOAT16})
    x = _FakeTensor(0x1000, "bf16", (4, 8), (8, 1), 0)
    a = c.init(c.DispatchArgs)
    tv.put_present(a, (("x", x), ("x_scales", None), ("topk_idx", None)))
    assert bytes(a) == _put_each(c.DispatchArgs, [("x", x), ("x_scales", None), ("topk_idx", None)])


def test_call_template_writes_what_put_writes_for_other_addresses(monkeypatch):
    monkeypatch.setattr(tv, "_CODES", {"bf16": c.DTYPE_BFLOAT16, "i32": c.DTYPE_INT32, "f32": c.DTYPE_FLOAT32})
    paths = ("x", "topk_idx", "packed_recv_x_scales", "handle.src_info")

    def tensors(base):  # the same shapes at other addresses; the scales absent
        return (_FakeTensor(base + 0x100, "bf16", (4, 512), (512, 1), 1),
                _FakeTensor(base + 0x200, "i32", (4, 8), (8, 1), 1), None,
                _FakeTensor(base + 0x300, "i32", (2, 64), (64, 1), 1))

    def general(ts):
        a = c.init(c.LowLatencyDispatchArgs)
        tv.put_present(a, tuple(zip(paths, ts)))
        a.num_max_dispatch_tokens_per_rank, a.num_experts, a.use_fp8 = 32, 16, 0
        return a

    template = tv.CallTemplate(general(tensors(0x10000)), paths)
    for base in (0x10000, 0x90000):
        ts = tensors(base)
        made = template.make(tuple(0 if t is None else t.data_ptr() for t in ts))
        assert bytes(made) == bytes(general(ts)), hex(base)
