"""Host time of each epcomm.deep_ep method without a GPU: the Python layer over a stand-in for the
library (every C call returns success at once) with CPU tensors.

    EPCOMM_LIBRARY=build/release/src/libepcomm.so PYTHONPATH=python \\
        python3 python/benchmarks/host_cost_cpu.py [--calls 3000] [--rounds 7] [--profile OP]

It measures what the layer itself does per call (template lookup, output allocation, struct
copy, the ctypes call), not the library's validation or kernel launches, and not what torch's
CUDA allocator costs on a GPU host (overhead.py measures that, on GPUs). Small shapes (128
tokens, hidden 512, 16 experts) keep CPU allocations cheap; the struct work does not depend on
them. Reports the best round's mean per call, us. --profile OP prints cProfile of OP's calls.
"""
import argparse
import cProfile
import ctypes
import pstats
import time

import torch

import epcomm.deep_ep as deep_ep
from epcomm import _capi as c


class _NullLibrary:
    """Stands in for libepcomm: every function succeeds and does nothing."""

    def __getattr__(self, name):
        def call(*args):
            return 0

        setattr(self, name, call)
        return call


class _NoStream:
    def wait_event(self, event):
        pass


def _buffer():
    for struct_type in (c.LowLatencyDispatchArgs, c.LowLatencyCombineArgs, c.LayoutArgs, c.DispatchArgs,
                        c.CombineArgs):
        c.init(struct_type)  # the structs' defaults from the real library, before the stand-in
    c._lib = _NullLibrary()
    deep_ep._raw_current_stream = lambda device: 0x5100
    b = object.__new__(deep_ep.Buffer)  # no GPU: only the fields the methods read
    b._handle, b._device, b.group_size, b._comm_raw = ctypes.c_void_p(1), 0, 2, 0xC000
    b._comm_stream = _NoStream()
    b._init_calls(torch.device("cpu"), c.init(c.Config), c.init(c.Config))
    return b


def _ops(b, T=128, H=512, K=8, E=16, R=2, n_max=128):
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)])
    w = torch.rand((T, K), generator=g)
    x = torch.randn((T, H), generator=g).to(torch.bfloat16)
    num_recv = 2 * T
    handle = (torch.zeros((R, R), dtype=torch.int32), torch.zeros(num_recv, dtype=torch.int32),
              torch.ones((T, R), dtype=torch.bool), torch.zeros((T, R), dtype=torch.int32), num_recv,
              (ctypes.c_int32 * (R * R))())
    rx = torch.randn((num_recv, H), generator=g).to(torch.bfloat16)
    rw = torch.rand((num_recv, K), generator=g)
    _, _, ll_handle, _, _ = b.low_latency_dispatch(x, idx, n_max, E)
    expert_x = torch.randn((E // R, R * n_max, H), generator=g).to(torch.bfloat16)
    return {
        "get_dispatch_layout": lambda: b.get_dispatch_layout(idx, E),
        "dispatch (cached)": lambda: b.dispatch(x, handle=handle),
        "combine": lambda: b.combine(rx, handle, topk_weights=rw),
        "low_latency_dispatch": lambda: b.low_latency_dispatch(x, idx, n_max, E),
        "low_latency_combine": lambda: b.low_latency_combine(expert_x, idx, w, ll_handle),
    }


def _mean_us(fn, calls):
    fn()  # the first call of a shape builds its template
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", default=None, help="an op name as printed: cProfile of its calls")
    args = parser.parse_args()
    ops = _ops(_buffer())
    if args.profile is not None:
        fn = ops[args.profile]
        fn()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            fn()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        return
    print(f"torch {torch.__version__}, CPU tensors, stand-in library; best of {args.rounds} x {args.calls} calls")
    for name, fn in ops.items():
        best = min(_mean_us(fn, args.calls) for _ in range(args.rounds))
        print(f"{name:22s} {best:6.2f} us")


if __name__ == "__main__":
    main()
