"""ctypes bindings of epcomm's C ABI (include/epcomm/epcomm.h). Torch-free.

Every struct here mirrors the C struct field for field; `check_struct_sizes()` compares them with
the sizes the compiled library reports, so a mismatch fails loudly instead of corrupting memory.
"""
import ctypes
import os
from ctypes import POINTER, c_char_p, c_double, c_int, c_int32, c_int64, c_size_t, c_uint32, c_void_p

# ---- status codes and exceptions -------------------------------------------------------------

SUCCESS = 0
INVALID_ARGUMENT = 1
NOT_IMPLEMENTED = 2
NOT_SUPPORTED = 3
CUDA_ERROR = 4
TIMEOUT = 5
BOOTSTRAP = 6
BUFFER_TOO_SMALL = 7
FAILED_STATE = 8
INTERNAL = 9


class EpcommError(RuntimeError):
    """An epcomm call failed; `status` is the C status code, the message names the argument."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class InvalidArgumentError(EpcommError, ValueError):
    pass


class NotSupportedError(EpcommError, NotImplementedError):
    pass


class EpcommNotImplementedError(EpcommError, NotImplementedError):
    pass


class EpcommTimeoutError(EpcommError, TimeoutError):
    pass


class BufferTooSmallError(EpcommError, ValueError):
    pass


_EXCEPTIONS = {
    INVALID_ARGUMENT: InvalidArgumentError,
    NOT_IMPLEMENTED: EpcommNotImplementedError,
    NOT_SUPPORTED: NotSupportedError,
    TIMEOUT: EpcommTimeoutError,
    BUFFER_TOO_SMALL: BufferTooSmallError,
}

# ---- stream handoffs of the normal ops (epcomm_handoff_t) --------------------------------------

HANDOFF_UPSTREAM = 1
HANDOFF_DOWNSTREAM = 2

# ---- dtypes --------------------------------------------------------------------------------

DTYPE_BFLOAT16 = 0
DTYPE_FLOAT8_E4M3 = 1
DTYPE_FLOAT32 = 2
DTYPE_INT32 = 3
DTYPE_INT64 = 4
DTYPE_BOOL = 5
DEVICE_CPU = 0
DEVICE_CUDA = 1

# ---- structs -------------------------------------------------------------------------------


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", c_void_p),
        ("dtype", c_int32),
        ("ndim", c_int32),
        ("shape", c_int64 * 4),
        ("strides", c_int64 * 4),
        ("device_kind", c_int32),
        ("device_index", c_int32),
    ]


_Dims = c_int64 * 4


def tensor(data_ptr, dtype, shape, strides=None, device_kind=DEVICE_CUDA, device_index=0):
    """A Tensor view; strides in elements (row-major when None). Built in one constructor call:
    this runs on every operation, so it avoids per-element assignments."""
    if strides is None:
        strides, acc = [], 1
        for s in reversed(shape):
            strides.insert(0, acc)
            acc *= s
    return Tensor(data_ptr, dtype, len(shape), _Dims(*shape), _Dims(*strides), device_kind, device_index)


def absent():
    t = Tensor()
    t.ndim = -1
    t.device_kind = DEVICE_CUDA
    return t


class BufferOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("rank", c_int32),
        ("num_ranks", c_int32),
        ("gpus_per_node", c_int32),
        ("device", c_int32),
        ("num_nvl_bytes", c_int64),
        ("num_rdma_bytes", c_int64),
        ("low_latency_mode", c_int32),
        ("timeout_seconds", c_double),
    ]


class Config(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("num_sms", c_int32),
        ("num_max_nvl_chunked_send_tokens", c_int32),
        ("num_max_nvl_chunked_recv_tokens", c_int32),
        ("num_max_rdma_chunked_send_tokens", c_int32),
        ("num_max_rdma_chunked_recv_tokens", c_int32),
    ]


class LayoutArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("topk_idx", Tensor),
        ("num_experts", c_int32),
        ("num_tokens_per_rank", Tensor),
        ("num_tokens_per_rdma_rank", Tensor),
        ("num_tokens_per_expert", Tensor),
        ("is_token_in_rank", Tensor),
        ("upstream", c_void_p),
        ("downstream", c_void_p),
        ("handoffs", c_int32),
    ]


class DispatchHandle(ctypes.Structure):
    _fields_ = [
        ("rank_prefix_matrix", Tensor),
        ("recv_src_idx", Tensor),
        ("is_token_in_rank", Tensor),
        ("send_slot", Tensor),
        ("num_recv_tokens", c_int64),
        ("rank_prefix_matrix_host", Tensor),
    ]


class DispatchNotifyArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("num_tokens_per_rank", Tensor),
        ("num_tokens_per_expert", Tensor),
        ("is_token_in_rank", Tensor),
        ("expert_alignment", c_int32),
        ("config", Config),
        ("handle", DispatchHandle),
        ("num_recv_tokens", c_int64),
        ("num_recv_tokens_per_expert", POINTER(c_int32)),
        ("num_local_experts", c_int32),
    ]


class DispatchArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("x", Tensor),
        ("x_scales", Tensor),
        ("topk_idx", Tensor),
        ("topk_weights", Tensor),
        ("num_tokens_per_rank", Tensor),
        ("num_tokens_per_expert", Tensor),
        ("is_token_in_rank", Tensor),
        ("num_experts", c_int32),
        ("expert_alignment", c_int32),
        ("num_worst_tokens", c_int64),
        ("cached", c_int32),
        ("config", Config),
        ("handle", DispatchHandle),
        ("recv_x", Tensor),
        ("recv_x_scales", Tensor),
        ("recv_topk_idx", Tensor),
        ("recv_topk_weights", Tensor),
        ("upstream", c_void_p),
        ("downstream", c_void_p),
        ("handoffs", c_int32),
    ]


class CombineArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("x", Tensor),
        ("handle", DispatchHandle),
        ("topk_weights", Tensor),
        ("bias0", Tensor),
        ("bias1", Tensor),
        ("config", Config),
        ("combined_x", Tensor),
        ("combined_topk_weights", Tensor),
        ("upstream", c_void_p),
        ("downstream", c_void_p),
        ("handoffs", c_int32),
    ]


class LowLatencyHandle(ctypes.Structure):
    _fields_ = [
        ("src_info", Tensor),
        ("layout_range", Tensor),
        ("num_max_dispatch_tokens_per_rank", c_int32),
        ("hidden", c_int32),
        ("num_experts", c_int32),
    ]


class LowLatencyDispatchArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("x", Tensor),
        ("topk_idx", Tensor),
        ("num_max_dispatch_tokens_per_rank", c_int32),
        ("num_experts", c_int32),
        ("use_fp8", c_int32),
        ("round_scale", c_int32),
        ("use_ue8m0", c_int32),
        ("cumulative_local_expert_recv_stats", Tensor),
        ("dispatch_wait_recv_cost_stats", Tensor),
        ("return_recv_hook", c_int32),
        ("packed_recv_x", Tensor),
        ("packed_recv_x_scales", Tensor),
        ("packed_recv_count", Tensor),
        ("handle", LowLatencyHandle),
        ("hook", c_int64),
    ]


class LowLatencyCombineArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("x", Tensor),
        ("topk_idx", Tensor),
        ("topk_weights", Tensor),
        ("handle", LowLatencyHandle),
        ("use_logfmt", c_int32),
        ("zero_copy", c_int32),
        ("return_recv_hook", c_int32),
        ("out", Tensor),
        ("combine_wait_recv_cost_stats", Tensor),
        ("hook", c_int64),
    ]


_STRUCTS = {
    "epcomm_tensor_t": Tensor,
    "epcomm_buffer_options_t": BufferOptions,
    "epcomm_config_t": Config,
    "epcomm_layout_args_t": LayoutArgs,
    "epcomm_dispatch_handle_t": DispatchHandle,
    "epcomm_dispatch_notify_args_t": DispatchNotifyArgs,
    "epcomm_dispatch_args_t": DispatchArgs,
    "epcomm_combine_args_t": CombineArgs,
    "epcomm_low_latency_handle_t": LowLatencyHandle,
    "epcomm_low_latency_dispatch_args_t": LowLatencyDispatchArgs,
    "epcomm_low_latency_combine_args_t": LowLatencyCombineArgs,
}

ALL_GATHER_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t, c_void_p)

# ---- library -------------------------------------------------------------------------------

_lib = None


def _declare(lib):
    b = c_void_p  # epcomm_buffer_t
    sigs = {
        "epcomm_version": ([], c_char_p),
        "epcomm_last_error_message": ([], c_char_p),
        "epcomm_status_name": ([c_int], c_char_p),
        "epcomm_struct_size": ([c_char_p], c_size_t),
        "epcomm_buffer_options_init": ([POINTER(BufferOptions)], None),
        "epcomm_config_init": ([POINTER(Config)], None),
        "epcomm_layout_args_init": ([POINTER(LayoutArgs)], None),
        "epcomm_dispatch_notify_args_init": ([POINTER(DispatchNotifyArgs)], None),
        "epcomm_dispatch_args_init": ([POINTER(DispatchArgs)], None),
        "epcomm_combine_args_init": ([POINTER(CombineArgs)], None),
        "epcomm_low_latency_dispatch_args_init": ([POINTER(LowLatencyDispatchArgs)], None),
        "epcomm_low_latency_combine_args_init": ([POINTER(LowLatencyCombineArgs)], None),
        "epcomm_get_low_latency_buffer_size_hint": ([c_int32, c_int32, c_int32, c_int32], c_int64),
        "epcomm_config_get_nvl_buffer_size_hint": ([POINTER(Config), c_int64, c_int32], c_int64),
        "epcomm_default_dispatch_config": ([c_int32, POINTER(Config)], None),
        "epcomm_default_combine_config": ([c_int32, POINTER(Config)], None),
        "epcomm_get_normal_buffer_size_hint": ([c_int64, c_int64, c_int32, c_int32], c_int64),
        "epcomm_buffer_create": ([POINTER(BufferOptions), ALL_GATHER_FN, c_void_p, POINTER(b)], c_int),
        "epcomm_buffer_destroy": ([b], c_int),
        "epcomm_buffer_barrier": ([b, c_void_p], c_int),
        "epcomm_buffer_synchronize": ([b, c_void_p], c_int),
        "epcomm_buffer_stream_wait": ([b, c_void_p, c_void_p], c_int),
        "epcomm_buffer_abort": ([b], c_int),
        "epcomm_buffer_local_region": ([b, c_int32, POINTER(c_void_p)], c_int),
        "epcomm_get_dispatch_layout": ([b, POINTER(LayoutArgs), c_void_p], c_int),
        "epcomm_dispatch_notify": ([b, POINTER(DispatchNotifyArgs), c_void_p], c_int),
        "epcomm_dispatch": ([b, POINTER(DispatchArgs), c_void_p], c_int),
        "epcomm_combine": ([b, POINTER(CombineArgs), c_void_p], c_int),
        "epcomm_low_latency_dispatch": ([b, POINTER(LowLatencyDispatchArgs), c_void_p], c_int),
        "epcomm_low_latency_combine": ([b, POINTER(LowLatencyCombineArgs), c_void_p], c_int),
        "epcomm_run_low_latency_hook": ([b, c_int64, c_void_p], c_int),
        "epcomm_get_next_low_latency_combine_buffer": ([b, POINTER(LowLatencyHandle), POINTER(c_void_p)], c_int),
        "epcomm_clean_low_latency_buffer": ([b, c_int32, c_int32, c_int32, c_void_p], c_int),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res


def library():
    """The loaded libepcomm: EPCOMM_LIBRARY if set, else the copy shipped next to this file."""
    global _lib
    if _lib is None:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.environ.get("EPCOMM_LIBRARY") or os.path.join(here, "libepcomm.so")
        lib = ctypes.CDLL(path)
        _declare(lib)
        _lib = lib
    return _lib


def check(status):
    """Raises the matching EpcommError subclass for a non-zero status."""
    if status == SUCCESS:
        return
    lib = library()
    message = lib.epcomm_last_error_message().decode(errors="replace")
    name = lib.epcomm_status_name(status).decode()
    raise _EXCEPTIONS.get(status, EpcommError)(status, f"{name}: {message}")


_DEFAULTS = {}  # struct type -> an instance holding its C defaults, copied by init()


def init(struct_type):
    """A struct of struct_type with its C defaults (*_init): the C init runs once per type, later
    calls copy its result (this runs on every operation)."""
    proto = _DEFAULTS.get(struct_type)
    if proto is not None:
        return struct_type.from_buffer_copy(proto)
    s = struct_type()
    init_fn = {
        BufferOptions: "epcomm_buffer_options_init",
        Config: "epcomm_config_init",
        LayoutArgs: "epcomm_layout_args_init",
        DispatchNotifyArgs: "epcomm_dispatch_notify_args_init",
        DispatchArgs: "epcomm_dispatch_args_init",
        CombineArgs: "epcomm_combine_args_init",
        LowLatencyDispatchArgs: "epcomm_low_latency_dispatch_args_init",
        LowLatencyCombineArgs: "epcomm_low_latency_combine_args_init",
    }[struct_type]
    getattr(library(), init_fn)(ctypes.byref(s))
    _DEFAULTS[struct_type] = struct_type.from_buffer_copy(s)
    return s


def check_struct_sizes():
    """Returns {name: (python_size, c_size)} for every struct whose mirror is wrong."""
    lib = library()
    wrong = {}
    for name, cls in _STRUCTS.items():
        c_size = lib.epcomm_struct_size(name.encode())
        if c_size != ctypes.sizeof(cls):
            wrong[name] = (ctypes.sizeof(cls), c_size)
    return wrong
