"""The methods' prepared argument structs (tv.CallTemplate) give the C library the
same bytes as the general path, call after call, with each call's own addresses; a call whose
shapes, dtypes or options differ gets its own template. Runs the Python layer over a recording
stand-in for the library, with CPU tensors: needs torch, no GPU."""
import ctypes
import struct

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (CPU-only CI)")

import epcomm.deep_ep as deep_ep  # noqa: E402
from epcomm import _capi as c  # noqa: E402
from epcomm import _torch_views as tv  # noqa: E402


class _Recorder:
    """Stands in for libepcomm: keeps the argument struct of each LL call, succeeds."""

    def __init__(self):
        self.structs = []

    def __getattr__(self, name):
        def call(*args):
            if name in ("epcomm_low_latency_dispatch", "epcomm_low_latency_combine", "epcomm_get_dispatch_layout",
                        "epcomm_dispatch", "epcomm_combine"):
                self.structs.append(args[1]._obj.__class__.from_buffer_copy(args[1]._obj))
            return 0

        return call


_CALLER_STREAM, _COMM_STREAM = 0x5100, 0xC000  # raw stream handles the stand-in library receives


class _FakeStream:
    """The comm stream of a Buffer without a GPU: records the events it is made to wait for."""

    def __init__(self):
        self.waited = []

    def wait_event(self, event):
        self.waited.append(event)


@pytest.fixture
def buffer(monkeypatch):
    # The structs' C defaults from the real library first; what is cached while the stand-in is
    # loaded is dropped afterwards.
    for struct_type in (c.LowLatencyDispatchArgs, c.LowLatencyCombineArgs, c.LayoutArgs, c.DispatchArgs,
                        c.CombineArgs):
        c.init(struct_type)
    monkeypatch.setattr(c, "_DEFAULTS", dict(c._DEFAULTS))
    monkeypatch.setattr(c, "_lib", _Recorder())
    monkeypatch.setattr(deep_ep, "_raw_current_stream", lambda device: _CALLER_STREAM)
    b = object.__new__(deep_ep.Buffer)  # no GPU: only the fields the methods read
    b._handle, b._device, b.group_size, b._comm_raw = ctypes.c_void_p(1), 0, 2, _COMM_STREAM
    b._comm_stream = _FakeStream()
    b._init_calls(torch.device("cpu"), c.init(c.Config), c.init(c.Config))
    yield b
    b._handle = None  # not a real Buffer: nothing for destroy() to free


def _addresses(s, paths):
    return [struct.unpack_from("<Q", s, tv._address_offset(type(s), p))[0] for p in paths]


def _without_addresses(s, paths):
    raw = bytearray(memoryview(s).cast("B"))
    for p in paths:
        raw[tv._address_offset(type(s), p):tv._address_offset(type(s), p) + 8] = bytes(8)
    return bytes(raw)


def _general(buffer, call):
    """The struct the general path builds for call() (templates set aside, then restored)."""
    saved, buffer._templates = buffer._templates, {}
    call()
    buffer._templates = saved
    return c._lib.structs[-1]


def _ptr(t):
    return 0 if t is None else t.data_ptr()


def _assert_contiguous(*tensors):
    """Outputs allocated from a template's stand-ins are as torch.empty would make them."""
    for t in tensors:
        if t is not None:
            assert t.is_contiguous() and t.stride() == torch.empty(t.shape).stride(), (t.shape, t.stride())


@pytest.mark.parametrize("options", [dict(), dict(use_fp8=False), dict(round_scale=True, use_ue8m0=True),
                                     dict(return_recv_hook=True)])
def test_templates_give_the_general_path_bytes_with_this_calls_addresses(buffer, options):
    T, H, K, E, n_max = 6, 512, 4, 16, 8
    dpaths, cpaths = deep_ep._LL_DISPATCH_PATHS, deep_ep._LL_COMBINE_PATHS
    for seed in range(3):  # the first call builds each template, the later ones use it
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((T, H), generator=g).to(torch.bfloat16)
        idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)])
        w = torch.rand((T, K), generator=g)
        recv, count, handle, _, _ = buffer.low_latency_dispatch(x, idx, n_max, E, **options)
        used = c._lib.structs[-1]
        recv_x, scales = recv if isinstance(recv, tuple) else (recv, None)
        assert _addresses(used, dpaths) == [_ptr(t) for t in (x, idx, recv_x, scales, count, handle[0], handle[1])]
        _assert_contiguous(recv_x, count, handle[0], handle[1])
        general = _general(buffer, lambda: buffer.low_latency_dispatch(x, idx, n_max, E, **options))
        assert _without_addresses(used, dpaths) == _without_addresses(general, dpaths)

        expert_x = torch.randn((E // 2, 2 * n_max, H), generator=g).to(torch.bfloat16)
        for zero_copy in (False, True):
            for out in (None, torch.empty((T, H), dtype=torch.bfloat16)):
                res, _, _ = buffer.low_latency_combine(expert_x, idx, w, handle, zero_copy=zero_copy, out=out)
                _assert_contiguous(res)
                used = c._lib.structs[-1]
                assert _addresses(used, cpaths) == [0 if zero_copy else expert_x.data_ptr(), idx.data_ptr(),
                                                    w.data_ptr(), res.data_ptr(), _ptr(handle[0]), _ptr(handle[1])]
                general = _general(buffer, lambda: buffer.low_latency_combine(expert_x, idx, w, handle,
                                                                              zero_copy=zero_copy, out=out))
                assert _without_addresses(used, cpaths) == _without_addresses(general, cpaths)


def test_a_call_with_other_shapes_or_options_gets_its_own_template(buffer):
    T, H, K, E = 6, 512, 4, 16
    x, idx = torch.randn((T, H)).to(torch.bfloat16), torch.randint(0, E, (T, K))
    buffer.low_latency_dispatch(x, idx, 8, E)
    buffer.low_latency_dispatch(x, idx, 8, E)
    assert len(buffer._templates) == 1
    buffer.low_latency_dispatch(x, idx, 16, E)  # another N_max
    buffer.low_latency_dispatch(x, idx, 8, E, use_fp8=False)
    buffer.low_latency_dispatch(x[:, :256].contiguous(), idx, 8, E)  # another hidden
    buffer.low_latency_dispatch(x, idx.to(torch.int32), 8, E)
    buffer.low_latency_dispatch(x.t().contiguous().t(), idx, 8, E)  # other strides
    assert len(buffer._templates) == 6
    # Statistics tensors take the general path every time.
    stats = torch.zeros(E // 2, dtype=torch.int32)
    buffer.low_latency_dispatch(x, idx, 8, E, cumulative_local_expert_recv_stats=stats)
    assert len(buffer._templates) == 6


def _handle(T, R, num_recv, with_host_matrix, seed):
    g = torch.Generator().manual_seed(seed)
    matrix_host = (ctypes.c_int32 * (R * R))() if with_host_matrix else None
    return (torch.randint(0, 9, (R, R), generator=g, dtype=torch.int32),
            torch.randint(0, T, (num_recv,), generator=g, dtype=torch.int32), torch.rand((T, R), generator=g) < 0.5,
            torch.randint(0, 9, (T, R), generator=g, dtype=torch.int32), num_recv, matrix_host)


@pytest.mark.parametrize("fp8", [False, True])
def test_normal_templates_give_the_general_path_bytes_with_this_calls_addresses(buffer, fp8):
    T, H, K, E, R, num_recv = 6, 512, 4, 16, 2, 9
    lpaths, dpaths, cpaths = deep_ep._LAYOUT_PATHS, deep_ep._CACHED_DISPATCH_PATHS, deep_ep._COMBINE_PATHS
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)])
        per_rank, _, per_expert, in_rank, _ = buffer.get_dispatch_layout(idx, E)
        used = c._lib.structs[-1]
        assert _addresses(used, lpaths) == [_ptr(t) for t in (idx, per_rank, per_expert, in_rank)] + [_CALLER_STREAM] * 2
        _assert_contiguous(per_rank, per_expert, in_rank)
        general = _general(buffer, lambda: buffer.get_dispatch_layout(idx, E))
        assert _without_addresses(used, lpaths) == _without_addresses(general, lpaths)

        handle = _handle(T, R, num_recv, with_host_matrix=seed != 1, seed=seed)
        x = torch.randn((T, H), generator=g).to(torch.bfloat16)
        x_in = (x.to(torch.float8_e4m3fn), torch.rand((T, H // 128), generator=g)) if fp8 else x
        recv, *_ = buffer.dispatch(x_in, handle=handle)
        used = c._lib.structs[-1]
        recv_x, recv_scales = recv if fp8 else (recv, None)
        x_data, x_scales = x_in if fp8 else (x_in, None)
        assert _addresses(used, dpaths) == [_ptr(t) for t in (x_data, x_scales, recv_x, recv_scales)] + [_CALLER_STREAM] * 2
        _assert_contiguous(recv_x, recv_scales)
        general = _general(buffer, lambda: buffer.dispatch(x_in, handle=handle))
        assert _without_addresses(used, dpaths) == _without_addresses(general, dpaths)

        rx, w = torch.randn((num_recv, H), generator=g).to(torch.bfloat16), torch.rand((num_recv, K), generator=g)
        for kwargs in (dict(topk_weights=w), dict(), dict(topk_weights=w, bias=(x, x))):
            combined, combined_w, _ = buffer.combine(rx, handle, **kwargs)
            used = c._lib.structs[-1]
            bias = kwargs.get("bias", (None, None))
            host = 0 if handle[5] is None else ctypes.addressof(handle[5])
            assert _addresses(used, cpaths) == [rx.data_ptr(), _ptr(kwargs.get("topk_weights")), _ptr(bias[0]),
                                                _ptr(bias[1]), combined.data_ptr(), _ptr(combined_w), host,
                                                _CALLER_STREAM, _CALLER_STREAM]
            _assert_contiguous(combined, combined_w)
            general = _general(buffer, lambda: buffer.combine(rx, handle, **kwargs))
            assert _without_addresses(used, cpaths) == _without_addresses(general, cpaths)


def test_normal_ops_hand_their_stream_handoffs_to_the_c_call(buffer, monkeypatch):
    """DeepEP's stream rules in the op's own call (epcomm_layout_args_t::handoffs): the comm
    stream waits for the caller's stream, or for previous_event (then made here), and the caller's
    stream waits for the op unless async_finish; with the template and on the general path, and
    for the legacy default stream (handle 0) as for any other."""
    T, E, R, num_recv = 6, 16, 2, 9
    idx = torch.randint(0, E, (T, 4))
    handle = _handle(T, R, num_recv, with_host_matrix=True, seed=0)
    rx = torch.randn((num_recv, 512)).to(torch.bfloat16)
    previous = deep_ep.EventOverlap(event="previous")
    both = c.HANDOFF_UPSTREAM | c.HANDOFF_DOWNSTREAM
    for caller in (_CALLER_STREAM, 0):
        monkeypatch.setattr(deep_ep, "_raw_current_stream", lambda device: caller)
        for _ in range(2):  # general path, then template
            for call in (lambda **kw: buffer.get_dispatch_layout(idx, E, **kw),
                         lambda **kw: buffer.dispatch(rx[:T], handle=handle, **kw),
                         lambda **kw: buffer.combine(rx, handle, **kw)):
                call()
                used = c._lib.structs[-1]
                assert (used.upstream or 0, used.downstream or 0, used.handoffs) == (caller, caller, both)
                waited = len(buffer._comm_stream.waited)
                call(previous_event=previous)
                used = c._lib.structs[-1]
                assert (used.downstream or 0, used.handoffs) == (caller, c.HANDOFF_DOWNSTREAM)
                assert buffer._comm_stream.waited[waited:] == ["previous"]
