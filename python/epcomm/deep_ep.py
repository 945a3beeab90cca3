"""Drop-in replacement for DeepEP V1's `deep_ep.Buffer` (../shared/spec/deep_ep_api.md):

    import epcomm.deep_ep as deep_ep

Same names, argument order, defaults and return tuples. Arguments for what epcomm does not
support yet raise NotImplementedError naming the argument; none is silently ignored.
torch is imported when a Buffer is created (or topk_idx_t is read), so importing this module and
reading its signatures needs no torch.

Normal and low-latency methods drive epcomm's GPU kernels over the C ABI (python/tests: the CPU
tests check the surface and errors; test_gpu.py runs every method on GPUs).
"""
import contextlib
import ctypes
import os

from epcomm import _capi as c
from epcomm import _torch_views as tv

_NO_CONTEXT = contextlib.nullcontext()


def _raw_current_stream(device):
    """The current CUDA stream of `device` as an integer handle, without building a torch Stream
    (the per-call host cost matters at decode sizes: docs/perf.md, Python layer)."""
    import torch

    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    return raw(device) if raw is not None else torch.cuda.current_stream(device).cuda_stream

__all__ = ["Buffer", "Config", "EventOverlap", "topk_idx_t"]


def __getattr__(name):
    if name == "topk_idx_t":
        import torch

        return torch.int64
    raise AttributeError(name)


class Config:
    """Tuning of the normal kernels (DeepEP's fields; epcomm reads num_sms)."""

    def __init__(self, num_sms=20, num_max_nvl_chunked_send_tokens=6, num_max_nvl_chunked_recv_tokens=256,
                 num_max_rdma_chunked_send_tokens=6, num_max_rdma_chunked_recv_tokens=256):
        self.num_sms = num_sms
        self.num_max_nvl_chunked_send_tokens = num_max_nvl_chunked_send_tokens
        self.num_max_nvl_chunked_recv_tokens = num_max_nvl_chunked_recv_tokens
        self.num_max_rdma_chunked_send_tokens = num_max_rdma_chunked_send_tokens
        self.num_max_rdma_chunked_recv_tokens = num_max_rdma_chunked_recv_tokens

    def _c(self):
        s = c.init(c.Config)
        for f in ("num_sms", "num_max_nvl_chunked_send_tokens", "num_max_nvl_chunked_recv_tokens",
                  "num_max_rdma_chunked_send_tokens", "num_max_rdma_chunked_recv_tokens"):
            setattr(s, f, int(getattr(self, f)))
        return s

    @classmethod
    def _from_c(cls, s):
        return cls(s.num_sms, s.num_max_nvl_chunked_send_tokens, s.num_max_nvl_chunked_recv_tokens,
                   s.num_max_rdma_chunked_send_tokens, s.num_max_rdma_chunked_recv_tokens)

    def get_nvl_buffer_size_hint(self, hidden_bytes, num_ranks):
        cfg = self._c()
        return int(c.library().epcomm_config_get_nvl_buffer_size_hint(ctypes.byref(cfg), int(hidden_bytes), int(num_ranks)))

    def get_rdma_buffer_size_hint(self, hidden_bytes, num_ranks):
        return 0  # one node: the normal kernels use no RDMA buffer


class EventOverlap:
    """A CUDA event plus tensors kept alive until it is waited on (DeepEP's semantics)."""

    def __init__(self, event=None, extra_tensors=None):
        self.event = event
        self.extra_tensors = extra_tensors

    def current_stream_wait(self):
        import torch

        if self.event is not None:
            torch.cuda.current_stream().wait_event(self.event)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.current_stream_wait()


def _not_supported(argument, why):
    raise NotImplementedError(f"epcomm.deep_ep.Buffer: {argument}: {why} is not supported yet")


class Buffer:
    """Communication buffers of one rank and DeepEP's operations over them."""

    num_sms = 20

    def __init__(self, group, num_nvl_bytes=0, num_rdma_bytes=0, low_latency_mode=False, num_qps_per_rank=24,
                 allow_nvlink_for_low_latency_mode=True, allow_mnnvl=False, use_fabric=False,
                 explicitly_destroy=False, enable_shrink=False, comm=None):
        # Unsupported features first, before any collective work.
        if enable_shrink:
            _not_supported("enable_shrink", "shrinking the group (masked ranks)")
        if use_fabric:
            _not_supported("use_fabric", "fabric memory (multi-node NVLink)")
        if allow_mnnvl:
            _not_supported("allow_mnnvl", "multi-node NVLink")
        if not allow_nvlink_for_low_latency_mode:
            _not_supported("allow_nvlink_for_low_latency_mode", "low-latency traffic over RDMA inside a node")
        if group is None and comm is None:
            raise ValueError("epcomm.deep_ep.Buffer: group: expected a torch.distributed group, or comm an mpi4py "
                             "communicator, got neither")
        import torch
        import torch.distributed as dist

        self.group = group
        self.comm = comm
        if group is not None:
            self.rank, self.group_size = dist.get_rank(group), dist.get_world_size(group)
            self._gather = tv.torch_all_gather(group)
        else:
            self.rank, self.group_size = comm.Get_rank(), comm.Get_size()
            self._gather = tv.mpi_all_gather(comm)
        self.num_nvl_bytes = int(num_nvl_bytes)
        self.num_rdma_bytes = int(num_rdma_bytes)
        self.low_latency_mode = bool(low_latency_mode)
        self.explicitly_destroy = explicitly_destroy
        self._device = torch.cuda.current_device()
        o = c.init(c.BufferOptions)
        o.rank, o.num_ranks, o.device = self.rank, self.group_size, self._device
        o.num_nvl_bytes, o.num_rdma_bytes = self.num_nvl_bytes, self.num_rdma_bytes
        o.low_latency_mode = int(self.low_latency_mode)
        # Bound on every cross-rank wait (semantics.md section 7); DeepEP's constructor has no such
        # argument, so it comes from EPCOMM_TIMEOUT_SECONDS (default: the library's 100 s).
        if os.environ.get("EPCOMM_TIMEOUT_SECONDS"):
            o.timeout_seconds = float(os.environ["EPCOMM_TIMEOUT_SECONDS"])
        self._handle = ctypes.c_void_p()
        c.check(c.library().epcomm_buffer_create(ctypes.byref(o), self._gather, None, ctypes.byref(self._handle)))
        self._comm_stream = torch.cuda.Stream(priority=-1)
        self._comm_raw = self._comm_stream.cuda_stream
        self._init_calls(torch.device("cuda", self._device), Buffer.get_dispatch_config(self.group_size)._c(),
                         Buffer.get_combine_config(self.group_size)._c())

    def _init_calls(self, device, dispatch_config_c, combine_config_c):
        """What the per-call paths keep (the CPU tests call this on a Buffer built without a GPU)."""
        import torch

        self._dev = device
        # Zero-size tensors of each output dtype on this device: t.new_empty(shape) allocates as
        # torch.empty(shape, dtype=, device=) does (caching allocator, current stream) without
        # parsing a dtype and a device per output (docs/perf.md, Python layer).
        self._like = {dt: torch.empty(0, dtype=dt, device=device)
                      for dt in (torch.int32, torch.int64, torch.float32, torch.bfloat16, torch.float8_e4m3fn,
                                 torch.bool)}
        self._empty_like = torch.empty_like
        # Default Configs as C structs, built once (each call would otherwise build two).
        self._dispatch_config_c, self._combine_config_c = dispatch_config_c, combine_config_c
        # Prepared argument structs by everything but the addresses (tv.CallTemplate): training
        # steps and decode loops repeat their shapes.
        self._templates = {}

    # ---- lifetime ----
    def destroy(self):
        if getattr(self, "_handle", None) is not None and self._handle.value is not None:
            handle, self._handle = self._handle, None
            c.check(c.library().epcomm_buffer_destroy(handle))

    def __del__(self):
        try:
            self.destroy()
        except Exception:
            pass

    # ---- static helpers ----
    @classmethod
    def set_num_sms(cls, new_num_sms):
        if int(new_num_sms) < 1:
            raise ValueError(f"set_num_sms: new_num_sms: expected a positive count, got {new_num_sms}")
        cls.num_sms = int(new_num_sms)

    @staticmethod
    def capture():
        import torch

        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream())
        return EventOverlap(event)

    @staticmethod
    def get_low_latency_rdma_size_hint(num_max_dispatch_tokens_per_rank, hidden, num_ranks, num_experts):
        return int(c.library().epcomm_get_low_latency_buffer_size_hint(
            int(num_max_dispatch_tokens_per_rank), int(hidden), int(num_ranks), int(num_experts)))

    @staticmethod
    def get_dispatch_config(num_ranks):
        s = c.init(c.Config)
        c.library().epcomm_default_dispatch_config(int(num_ranks), ctypes.byref(s))
        return Config._from_c(s)

    @staticmethod
    def get_combine_config(num_ranks):
        s = c.init(c.Config)
        c.library().epcomm_default_combine_config(int(num_ranks), ctypes.byref(s))
        return Config._from_c(s)

    @staticmethod
    def is_sm90_compiled():
        return True

    def get_comm_stream(self):
        return self._comm_stream

    def get_local_buffer_tensor(self, dtype, size=None, offset=0, use_rdma_buffer=False):
        """A tensor view into this rank's communication buffer (not owned; valid until destroy)."""
        import torch

        ptr = ctypes.c_void_p()
        c.check(c.library().epcomm_buffer_local_region(self._handle, int(use_rdma_buffer), ctypes.byref(ptr)))
        total = self.num_rdma_bytes if use_rdma_buffer else self.num_nvl_bytes
        element = torch.empty((), dtype=dtype).element_size()
        count = (total - offset) // element if size is None else int(torch.Size(size).numel())
        if offset < 0 or offset + count * element > total:
            raise ValueError(f"get_local_buffer_tensor: offset/size: expected a range inside the {total}-byte region, "
                             f"got offset {offset} and {count * element} bytes")
        raw = torch.as_tensor(_RawCuda(ptr.value + offset, count * element), device=f"cuda:{self._device}")
        flat = raw.view(dtype)
        return flat if size is None else flat.view(size)

    # ---- stream and event plumbing (DeepEP's rules) ----
    def _handoffs(self, previous_event, async_finish, allocate_on_comm_stream):
        """The stream handoffs of a normal op, done by its own C call (one C call per op instead
        of three): (the caller's stream as a raw handle, the c.HANDOFF_* mask). The comm stream
        waits for the caller's stream (for previous_event the wait is made here instead) and,
        unless async_finish, the caller's stream waits for the op."""
        if allocate_on_comm_stream and not (previous_event is not None and async_finish):
            raise ValueError("allocate_on_comm_stream=True needs previous_event and async_finish=True")
        compute = _raw_current_stream(self._device)  # 0 is the legacy default stream, a stream too
        if previous_event is not None:
            self._comm_stream.wait_event(previous_event.event)
            return compute, 0 if async_finish else c.HANDOFF_DOWNSTREAM
        return compute, c.HANDOFF_UPSTREAM if async_finish else c.HANDOFF_UPSTREAM | c.HANDOFF_DOWNSTREAM

    def _comm_event(self, tensors):
        """async_finish: an event recorded on the comm stream, with `tensors` kept alive and
        recorded on that stream (DeepEP's rules)."""
        import torch

        event = torch.cuda.Event()
        event.record(self._comm_stream)
        for t in tensors:
            if t is not None:
                t.record_stream(self._comm_stream)
        return EventOverlap(event, tensors)

    def _new(self, shape, dtype):
        """An uninitialised tensor on this Buffer's device (torch.empty through self._like)."""
        like = self._like.get(dtype)
        if like is None:
            import torch

            return torch.empty(shape, dtype=dtype, device=self._dev)
        return like.new_empty(shape)

    def _alloc(self, allocate_on_comm_stream):
        import torch

        return torch.cuda.stream(self._comm_stream) if allocate_on_comm_stream else _NO_CONTEXT

    # ---- normal kernels ----
    # Calls that repeat a shape take a prepared argument struct (tv.CallTemplate, kept in
    # self._templates by everything the struct holds but addresses) and allocate their outputs
    # from its stand-ins; the first call of a shape builds the struct the general way.
    def get_dispatch_layout(self, topk_idx, num_experts, previous_event=None, async_finish=False,
                            allocate_on_comm_stream=False):
        compute, handoffs = self._handoffs(previous_event, async_finish, allocate_on_comm_stream)
        key = ("layout", topk_idx.shape, topk_idx.stride(), topk_idx.dtype, topk_idx.get_device(), num_experts,
               handoffs)
        template = self._templates.get(key)
        with self._alloc(allocate_on_comm_stream):
            if template is not None:
                per_rank, per_expert, in_rank = map(self._empty_like, template.outputs)
            else:
                import torch

                per_rank = self._new(self.group_size, torch.int32)
                per_expert = self._new(num_experts, torch.int32)
                in_rank = self._new((topk_idx.size(0), self.group_size), torch.bool)
        if template is not None:
            a = template.make((topk_idx.data_ptr(), per_rank.data_ptr(), per_expert.data_ptr(), in_rank.data_ptr(),
                               compute, compute))
        else:
            a = c.init(c.LayoutArgs)
            a.num_experts = int(num_experts)
            for field, t in zip(_LAYOUT_PATHS, (topk_idx, per_rank, per_expert, in_rank)):
                tv.put(a, field, t)
            a.upstream, a.downstream, a.handoffs = compute, compute, handoffs
            self._keep_template(key, a, _LAYOUT_PATHS, (per_rank, per_expert, in_rank))
        c.check(c.library().epcomm_get_dispatch_layout(self._handle, ctypes.byref(a), self._comm_raw))
        event = self._comm_event([topk_idx, per_rank, per_expert, in_rank]) if async_finish else EventOverlap()
        return per_rank, None, per_expert, in_rank, event

    def dispatch(self, x, handle=None, num_tokens_per_rank=None, num_tokens_per_rdma_rank=None, is_token_in_rank=None,
                 num_tokens_per_expert=None, topk_idx=None, topk_weights=None, expert_alignment=1, num_worst_tokens=0,
                 config=None, previous_event=None, async_finish=False, allocate_on_comm_stream=False):
        if num_tokens_per_rdma_rank is not None:
            _not_supported("num_tokens_per_rdma_rank", "multi-node dispatch")
        fp8 = isinstance(x, tuple)
        x_data, x_scales = (x[0], x[1]) if fp8 else (x, None)
        compute, handoffs = self._handoffs(previous_event, async_finish, allocate_on_comm_stream)
        cached = handle is not None
        # A cached dispatch with the default Config: a template for everything but the handle,
        # whose views put_group keeps on the handle itself.
        key = (("dispatch", x_data.shape, x_data.stride(), x_data.dtype, x_data.get_device(), _view_key(x_scales),
                handle[4], expert_alignment, num_worst_tokens, handoffs) if cached and config is None else None)
        template = self._templates.get(key) if key is not None else None
        if template is not None:
            rank_prefix_matrix, recv_src_idx, in_rank, send_slot = handle[0], handle[1], handle[2], handle[3]
            with self._alloc(allocate_on_comm_stream):
                if fp8:
                    recv_x, recv_scales = map(self._empty_like, template.outputs)
                else:
                    recv_x, recv_scales = self._empty_like(template.outputs[0]), None
            a = template.make((x_data.data_ptr(), _address(x_scales), recv_x.data_ptr(), _address(recv_scales),
                               compute, compute), (rank_prefix_matrix, recv_src_idx, in_rank, send_slot))
            c.check(c.library().epcomm_dispatch(self._handle, ctypes.byref(a), self._comm_raw))
            event = (self._comm_event([x_data, x_scales, topk_idx, topk_weights, recv_x, recv_scales,
                                       rank_prefix_matrix, recv_src_idx, send_slot]) if async_finish else EventOverlap())
            return ((recv_x, recv_scales) if fp8 else recv_x), None, None, None, None, event
        # The general path: the notify step when the receive counts are unknown, the struct built
        # view by view (and kept as a template under `key` when that is not None).
        import torch

        config_c = self._dispatch_config_c if config is None else config._c()
        T, H, R = x_data.size(0), x_data.size(1), self.group_size
        lib, stream = c.library(), self._comm_raw
        if cached:
            rank_prefix_matrix, recv_src_idx, in_rank, send_slot, num_recv, matrix_host = handle
        else:
            # The host copy of rank_prefix_matrix that dispatch_notify fills: with it the combine
            # sends its rows with the copy engines where that is faster (docs/perf.md, v23).
            matrix_host = None
            with self._alloc(allocate_on_comm_stream):
                rank_prefix_matrix = self._new((R, R), torch.int32)
                send_slot = self._new((T, R), torch.int32)
            in_rank = is_token_in_rank
            num_recv, per_expert_list = int(num_worst_tokens), []
            if num_worst_tokens == 0:  # the single host wait: learn the receive counts
                if handoffs & c.HANDOFF_UPSTREAM:  # the notify runs first on the comm stream
                    c.check(lib.epcomm_buffer_stream_wait(self._handle, stream, compute))
                    handoffs &= ~c.HANDOFF_UPSTREAM
                E_local = num_tokens_per_expert.size(0) // R
                counts = (ctypes.c_int32 * E_local)()
                n = c.init(c.DispatchNotifyArgs)
                tv.put_present(n, (("num_tokens_per_rank", num_tokens_per_rank),
                                   ("num_tokens_per_expert", num_tokens_per_expert), ("is_token_in_rank", in_rank),
                                   ("handle.rank_prefix_matrix", rank_prefix_matrix),
                                   ("handle.is_token_in_rank", in_rank), ("handle.send_slot", send_slot)))
                n.expert_alignment, n.config, n.handle.num_recv_tokens = int(expert_alignment), config_c, 0
                n.num_recv_tokens_per_expert = ctypes.cast(counts, ctypes.POINTER(ctypes.c_int32))
                n.num_local_experts = E_local
                matrix_host = (ctypes.c_int32 * (R * R))()
                tv.put_host_matrix(n, "handle.rank_prefix_matrix_host", matrix_host, R)
                c.check(lib.epcomm_dispatch_notify(self._handle, ctypes.byref(n), stream))
                num_recv, per_expert_list = int(n.num_recv_tokens), list(counts)
        with self._alloc(allocate_on_comm_stream):
            recv_x = self._new((num_recv, H), x_data.dtype)
            recv_scales = self._new((num_recv, H // 128), torch.float32) if fp8 else None
            if not cached:
                recv_src_idx = self._new(num_recv, torch.int32)
            with_topk = topk_idx is not None and not cached
            recv_topk = self._new((num_recv, topk_idx.size(1)), topk_idx.dtype) if with_topk else None
            recv_w = self._new((num_recv, topk_idx.size(1)), torch.float32) if with_topk else None
        a = c.init(c.DispatchArgs)
        tv.put_present(a, (("x", x_data), ("x_scales", x_scales)))
        if not cached:
            tv.put_present(a, (("topk_idx", topk_idx), ("topk_weights", topk_weights),
                               ("num_tokens_per_rank", num_tokens_per_rank),
                               ("num_tokens_per_expert", num_tokens_per_expert), ("is_token_in_rank", in_rank)))
            a.num_experts = int(num_tokens_per_expert.size(0))
        a.expert_alignment, a.num_worst_tokens, a.cached, a.config = int(expert_alignment), int(num_worst_tokens), int(cached), config_c
        tv.put_group(a, "handle.rank_prefix_matrix", (rank_prefix_matrix, recv_src_idx, in_rank, send_slot))
        tv.put_present(a, (("recv_x", recv_x), ("recv_x_scales", recv_scales), ("recv_topk_idx", recv_topk),
                           ("recv_topk_weights", recv_w)))
        a.handle.num_recv_tokens = 0 if num_worst_tokens else num_recv
        a.upstream, a.downstream, a.handoffs = compute, compute, handoffs
        self._keep_template(key, a, _CACHED_DISPATCH_PATHS, (recv_x, recv_scales) if fp8 else (recv_x,),
                            group=_HANDLE_GROUP)
        c.check(lib.epcomm_dispatch(self._handle, ctypes.byref(a), stream))
        event = (self._comm_event([x_data, x_scales, topk_idx, topk_weights, recv_x, recv_scales, recv_topk, recv_w,
                                   rank_prefix_matrix, recv_src_idx, send_slot]) if async_finish else EventOverlap())
        recv = (recv_x, recv_scales) if fp8 else recv_x
        if cached:
            return recv, None, None, None, None, event
        new_handle = (rank_prefix_matrix, recv_src_idx, in_rank, send_slot, num_recv, matrix_host)
        return recv, recv_topk, recv_w, per_expert_list, new_handle, event

    def combine(self, x, handle, topk_weights=None, bias=None, config=None, previous_event=None, async_finish=False,
                allocate_on_comm_stream=False):
        rank_prefix_matrix, recv_src_idx, in_rank, send_slot, num_recv, matrix_host = handle
        bias0, bias1 = (bias if isinstance(bias, tuple) else (bias, None)) if bias is not None else (None, None)
        compute, handoffs = self._handoffs(previous_event, async_finish, allocate_on_comm_stream)
        T = in_rank.size(0)
        # With the default Config: a template for everything but the handle (see dispatch).
        key = (("combine", x.shape, x.stride(), x.dtype, x.get_device(), _view_key(topk_weights), _view_key(bias0),
                _view_key(bias1), T, num_recv, matrix_host is None, handoffs) if config is None else None)
        template = self._templates.get(key) if key is not None else None
        with self._alloc(allocate_on_comm_stream):
            if template is not None:
                if topk_weights is not None:
                    combined, combined_w = map(self._empty_like, template.outputs)
                else:
                    combined, combined_w = self._empty_like(template.outputs[0]), None
            else:
                import torch

                combined = self._new((T, x.size(1)), x.dtype)
                combined_w = self._new((T, topk_weights.size(1)), torch.float32) if topk_weights is not None else None
        views = (rank_prefix_matrix, recv_src_idx, in_rank, send_slot)
        if template is not None:
            a = template.make((x.data_ptr(), _address(topk_weights), _address(bias0), _address(bias1),
                               combined.data_ptr(), _address(combined_w),
                               0 if matrix_host is None else ctypes.addressof(matrix_host), compute, compute), views)
        else:
            a = c.init(c.CombineArgs)
            tv.put_present(a, (("x", x), ("topk_weights", topk_weights), ("bias0", bias0), ("bias1", bias1),
                               ("combined_x", combined), ("combined_topk_weights", combined_w)))
            a.handle.num_recv_tokens = int(num_recv)
            a.config = self._combine_config_c if config is None else config._c()
            if matrix_host is not None:
                tv.put_host_matrix(a, "handle.rank_prefix_matrix_host", matrix_host, self.group_size)
            a.upstream, a.downstream, a.handoffs = compute, compute, handoffs
            tv.put_group(a, _HANDLE_GROUP[0], views)
            self._keep_template(key, a, _COMBINE_PATHS,
                                (combined,) if combined_w is None else (combined, combined_w), group=_HANDLE_GROUP)
        c.check(c.library().epcomm_combine(self._handle, ctypes.byref(a), self._comm_raw))
        event = (self._comm_event([x, topk_weights, bias0, bias1, combined, combined_w]) if async_finish
                 else EventOverlap())
        return combined, combined_w, event

    # ---- low-latency kernels ----
    # Results live in tensors this method allocates; the zero-copy combine buffer and the library's
    # own areas are double-buffered: the two most recent low-latency calls stay valid, the third
    # reuses the first one's area (semantics.md section 4).
    def _ll_stream(self, async_finish):
        """The stream an LL op runs on (raw handle): the caller's, or the comm stream after it
        (async_finish)."""
        compute = _raw_current_stream(self._device)
        if async_finish:
            c.check(c.library().epcomm_buffer_stream_wait(self._handle, self._comm_raw, compute))
            return self._comm_raw
        return compute

    def _ll_hook(self, hook_id, tensors):
        """The receive half as a callable: launches on the stream current when it is called."""
        if hook_id < 0:
            return None

        def hook():
            c.check(c.library().epcomm_run_low_latency_hook(self._handle, int(hook_id),
                                                             _raw_current_stream(self._device)))
        hook.tensors = tensors  # keep the outputs alive as long as the hook
        return hook

    @staticmethod
    def _put_ll_handle(args, handle, prefix="handle."):
        """Writes the LL handle tuple into args' handle field (or, with prefix "", into a
        c.LowLatencyHandle itself)."""
        src_info, layout_range, n_max, hidden, num_experts = handle
        tv.put_group(args, prefix + "src_info", (src_info, layout_range))
        h = args.handle if prefix else args
        h.num_max_dispatch_tokens_per_rank, h.hidden, h.num_experts = int(n_max), int(hidden), int(num_experts)

    def _keep_template(self, key, args, paths, outputs=(), strided=None, group=None):
        if key is None:
            return
        if len(self._templates) >= 64:  # shapes that keep changing: start over rather than grow
            self._templates.clear()
        self._templates[key] = tv.CallTemplate(args, paths, outputs, strided, group)

    def low_latency_dispatch(self, x, topk_idx, num_max_dispatch_tokens_per_rank, num_experts,
                             cumulative_local_expert_recv_stats=None, dispatch_wait_recv_cost_stats=None, use_fp8=True,
                             round_scale=False, use_ue8m0=False, async_finish=False, return_recv_hook=False):
        if async_finish and return_recv_hook:
            raise ValueError("low_latency_dispatch: async_finish and return_recv_hook cannot both be set")
        R, H, n_max, num_experts = self.group_size, x.size(1), int(num_max_dispatch_tokens_per_rank), int(num_experts)
        if num_experts % R != 0:
            raise ValueError(f"low_latency_dispatch: num_experts: expected a multiple of {R} ranks, got {num_experts}")
        stream = self._ll_stream(async_finish)
        # Everything the struct holds but the addresses (the outputs' shapes follow from it).
        key = (("d", x.shape, x.stride(), x.dtype, x.get_device(), topk_idx.shape, topk_idx.stride(), topk_idx.dtype,
                topk_idx.get_device(), n_max, num_experts, use_fp8, round_scale, use_ue8m0, return_recv_hook)
               if cumulative_local_expert_recv_stats is None and dispatch_wait_recv_cost_stats is None else None)
        template = self._templates.get(key) if key is not None else None
        if template is not None:
            recv_x, count, src_info, layout_range = map(self._empty_like, template.outputs)
        else:
            import torch

            E_local, rows = num_experts // R, R * n_max
            recv_x = self._like[torch.float8_e4m3fn if use_fp8 else torch.bfloat16].new_empty((E_local, rows, H))
            count = self._like[torch.int32].new_empty(E_local)
            src_info = self._like[torch.int32].new_empty((E_local, rows))
            layout_range = self._like[torch.int64].new_empty((E_local, R))
        scales = None
        if use_fp8:
            if template is not None:
                like, shape, strides = template.strided
                scales = like.new_empty_strided(shape, strides)
            else:
                # [E_local, rows, groups] column-major in the last two dimensions, in one call (an
                # empty [E_local, groups, rows] transposed).
                groups = H // 512 if use_ue8m0 else H // 128
                scales = self._like[torch.int32 if use_ue8m0 else torch.float32].new_empty_strided(
                    (E_local, rows, groups), (groups * rows, 1, rows))
        if template is not None:
            a = template.make((x.data_ptr(), topk_idx.data_ptr(), recv_x.data_ptr(),
                               0 if scales is None else scales.data_ptr(), count.data_ptr(), src_info.data_ptr(),
                               layout_range.data_ptr()))
        else:
            a = c.init(c.LowLatencyDispatchArgs)
            tv.put_present(a, (("x", x), ("topk_idx", topk_idx),
                               ("cumulative_local_expert_recv_stats", cumulative_local_expert_recv_stats),
                               ("dispatch_wait_recv_cost_stats", dispatch_wait_recv_cost_stats),
                               ("packed_recv_x", recv_x), ("packed_recv_x_scales", scales),
                               ("packed_recv_count", count), ("handle.src_info", src_info),
                               ("handle.layout_range", layout_range)))
            a.num_max_dispatch_tokens_per_rank, a.num_experts = n_max, num_experts
            a.use_fp8, a.round_scale, a.use_ue8m0 = int(use_fp8), int(round_scale), int(use_ue8m0)
            a.return_recv_hook = int(return_recv_hook)
            h = a.handle
            h.num_max_dispatch_tokens_per_rank, h.hidden, h.num_experts = n_max, H, num_experts
            self._keep_template(key, a, _LL_DISPATCH_PATHS, (recv_x, count, src_info, layout_range), scales)
        c.check(c.library().epcomm_low_latency_dispatch(self._handle, ctypes.byref(a), stream))
        handle = (src_info, layout_range, n_max, H, num_experts)
        recv = (recv_x, scales) if use_fp8 else recv_x
        if not (async_finish or return_recv_hook):
            return recv, count, handle, EventOverlap(), None
        outputs = [x, topk_idx, recv_x, scales, count, src_info, layout_range, cumulative_local_expert_recv_stats,
                   dispatch_wait_recv_cost_stats]
        event = self._comm_event(outputs) if async_finish else EventOverlap()
        hook = self._ll_hook(a.hook, outputs) if return_recv_hook else None
        return recv, count, handle, event, hook

    def low_latency_combine(self, x, topk_idx, topk_weights, handle, use_logfmt=False, zero_copy=False,
                            async_finish=False, return_recv_hook=False, out=None, combine_wait_recv_cost_stats=None):
        if use_logfmt:
            _not_supported("use_logfmt", "LogFMT combine")
        if async_finish and return_recv_hook:
            raise ValueError("low_latency_combine: async_finish and return_recv_hook cannot both be set")
        stream = self._ll_stream(async_finish)
        src_info, layout_range, n_max, hidden, num_experts = handle
        given_out = out is not None
        key = None
        if combine_wait_recv_cost_stats is None:
            key = ("c", None if zero_copy else (x.shape, x.stride(), x.dtype, x.get_device()), topk_idx.shape,
                   topk_idx.stride(), topk_idx.dtype, topk_idx.get_device(), topk_weights.shape,
                   topk_weights.stride(), topk_weights.dtype, topk_weights.get_device(),
                   (out.shape, out.stride(), out.dtype, out.get_device()) if given_out else None,
                   src_info.shape, src_info.stride(), src_info.dtype, src_info.get_device(), layout_range.shape,
                   layout_range.stride(), layout_range.dtype, layout_range.get_device(), n_max, hidden, num_experts,
                   return_recv_hook)
        template = self._templates.get(key) if key is not None else None
        if template is not None:
            if not given_out:
                out = self._empty_like(template.outputs[0])
            a = template.make((0 if zero_copy else x.data_ptr(), topk_idx.data_ptr(), topk_weights.data_ptr(),
                               out.data_ptr(), src_info.data_ptr(), layout_range.data_ptr()))
        else:
            if not given_out:
                import torch

                out = self._like[torch.bfloat16].new_empty((topk_idx.size(0), int(hidden)))
            a = c.init(c.LowLatencyCombineArgs)
            tv.put_present(a, (("x", None if zero_copy else x), ("topk_idx", topk_idx),
                               ("topk_weights", topk_weights), ("out", out),
                               ("combine_wait_recv_cost_stats", combine_wait_recv_cost_stats)))
            self._put_ll_handle(a, handle)
            a.use_logfmt, a.zero_copy, a.return_recv_hook = 0, int(zero_copy), int(return_recv_hook)
            self._keep_template(key, a, _LL_COMBINE_PATHS, () if given_out else (out,))
        c.check(c.library().epcomm_low_latency_combine(self._handle, ctypes.byref(a), stream))
        if not (async_finish or return_recv_hook):
            return out, EventOverlap(), None
        outputs = [x, topk_idx, topk_weights, out, src_info, layout_range, combine_wait_recv_cost_stats]
        event = self._comm_event(outputs) if async_finish else EventOverlap()
        hook = self._ll_hook(a.hook, outputs) if return_recv_hook else None
        return out, event, hook

    def get_next_low_latency_combine_buffer(self, handle):
        """BF16 view [E_local, R*N_max, H] of the zero-copy area (valid until the next LL call)."""
        import torch

        ptr = ctypes.c_void_p()
        h = c.LowLatencyHandle()
        self._put_ll_handle(h, handle, prefix="")
        c.check(c.library().epcomm_get_next_low_latency_combine_buffer(self._handle, ctypes.byref(h), ctypes.byref(ptr)))
        n_max, hidden, num_experts = int(handle[2]), int(handle[3]), int(handle[4])
        E_local, rows = num_experts // self.group_size, self.group_size * n_max
        raw = torch.as_tensor(_RawCuda(ptr.value, E_local * rows * hidden * 2), device=f"cuda:{self._device}")
        return raw.view(torch.bfloat16).view(E_local, rows, hidden)

    def clean_low_latency_buffer(self, num_max_dispatch_tokens_per_rank, hidden, num_experts):
        import torch

        c.check(c.library().epcomm_clean_low_latency_buffer(self._handle, int(num_max_dispatch_tokens_per_rank),
                                                            int(hidden), int(num_experts),
                                                            torch.cuda.current_stream().cuda_stream))

    def low_latency_update_mask_buffer(self, rank_to_mask, mask=False):
        _not_supported("low_latency_update_mask_buffer", "shrinking the group (enable_shrink)")

    def low_latency_query_mask_buffer(self, mask_status):
        _not_supported("low_latency_query_mask_buffer", "shrinking the group (enable_shrink)")

    def low_latency_clean_mask_buffer(self):
        _not_supported("low_latency_clean_mask_buffer", "shrinking the group (enable_shrink)")


def _view_key(t):
    """What a tensor's view holds besides its address (for template keys); None when absent."""
    return None if t is None else (t.shape, t.stride(), t.dtype, t.get_device())


def _address(t):
    return 0 if t is None else t.data_ptr()


# The tensor fields each call's template rewrites, in the order of the addresses its make() is
# given.
_LAYOUT_PATHS = ("topk_idx", "num_tokens_per_rank", "num_tokens_per_expert", "is_token_in_rank", "upstream",
                 "downstream")
_CACHED_DISPATCH_PATHS = ("x", "x_scales", "recv_x", "recv_x_scales", "upstream", "downstream")
_COMBINE_PATHS = ("x", "topk_weights", "bias0", "bias1", "combined_x", "combined_topk_weights",
                  "handle.rank_prefix_matrix_host", "upstream", "downstream")
_HANDLE_GROUP = ("handle.rank_prefix_matrix", 4)  # a normal handle's views, in the C handle's order
_LL_DISPATCH_PATHS = ("x", "topk_idx", "packed_recv_x", "packed_recv_x_scales", "packed_recv_count",
                      "handle.src_info", "handle.layout_range")
_LL_COMBINE_PATHS = ("x", "topk_idx", "topk_weights", "out", "handle.src_info", "handle.layout_range")


class _RawCuda:
    """Bytes of device memory exposed through __cuda_array_interface__ (for torch.as_tensor)."""

    def __init__(self, ptr, nbytes):
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "data": (ptr, False), "version": 3}
