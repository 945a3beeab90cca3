"""What the Python layer (epcomm.deep_ep) adds per call over the library's own host path.

    python3 python/benchmarks/overhead.py [--tokens 128] [--iters 200] [--json FILE] [--profile FILE]

For each op, at `tokens` tokens per rank on 2 GPUs: the host time of the deep_ep method (argument
handling, output allocation, stream/event plumbing, the C call) against the host time of the bare
C ABI call with the same, prebuilt arguments (validation and kernel launches in C++). Both are
host wall-clock times of issuing the call, with the GPU idle before each call (synchronised,
untimed), the two calls alternated `iters` times; the overhead is the median of the pairs'
differences (a host that drifts during the run moves both calls of a pair). alloc_us is the
part of it that allocating the call's outputs costs in torch's CUDA allocator alone. --profile
writes, for rank 0, each op's cProfile of `iters` calls (functions by own time) to FILE.
"""
import argparse
import json
import os
import socket
import statistics
import time


class _Recorder:
    """Stands in for the loaded library and records the C calls a method makes."""

    def __init__(self, lib):
        self._lib = lib
        self.calls = []

    def __getattr__(self, name):
        fn = getattr(self._lib, name)

        def call(*args):
            self.calls.append((fn, args))
            return fn(*args)

        return call


def _time_paired(op, bare, iters):
    """Host times of op() and bare() called alternately, GPU idle before each call (median us of
    each, and the median of the per-pair differences: a drift of the host during the run hits
    both calls of a pair alike)."""
    import torch

    py, c_abi = [], []
    for _ in range(iters):
        for fn, times in ((op, py), (bare, c_abi)):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    diff = statistics.median(p - b for p, b in zip(py, c_abi))
    return statistics.median(py) * 1e6, statistics.median(c_abi) * 1e6, diff * 1e6


def _fresh_tensors(result, inputs):
    """The tensors in `result` (nested tuples and lists) that are not among `inputs` (by
    identity): the outputs the call allocated."""
    import torch

    seen, out, stack = {id(t) for t in inputs}, [], [result]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, torch.Tensor) and id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def _alloc_us(tensors, iters):
    """Median host time of allocating tensors of the same shapes, strides, dtypes and device as
    `tensors` (what the call's outputs cost in torch's allocator alone; a C++ caller pays its own
    allocator for them too), GPU idle before each round."""
    import torch

    specs = [(t.shape, t.stride(), t.dtype, t.device) for t in tensors]
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        kept = [torch.empty_strided(shape, stride, dtype=dtype, device=device) for shape, stride, dtype, device in specs]
        times.append(time.perf_counter() - t0)
        del kept
    return statistics.median(times) * 1e6


def _primitives(buffer, x, f):
    """Host cost of the pieces a call is made of (mean of 2000, us)."""
    import torch

    import epcomm._capi as c
    import epcomm._torch_views as tv
    from epcomm.deep_ep import _raw_current_stream

    dev, lib, ev = torch.device("cuda", buffer._device), c.library(), torch.cuda.Event()
    args = c.init(c.DispatchArgs)
    pieces = {
        "torch.cuda.current_stream()": lambda: torch.cuda.current_stream(),
        "raw current stream": lambda: _raw_current_stream(buffer._device),
        "torch Event record + wait_event": lambda: (ev.record(buffer._comm_stream), torch.cuda.current_stream().wait_event(ev)),
        "epcomm_buffer_stream_wait": lambda: lib.epcomm_buffer_stream_wait(buffer._handle, buffer._comm_raw, buffer._comm_raw),
        "torch.empty 128x7168 bf16": lambda: torch.empty((128, 7168), dtype=torch.bfloat16, device=dev),
        "x.new_empty 128x7168": lambda: x.new_empty((128, 7168)),
        "one tensor view as c.tensor": lambda: c.tensor(x.data_ptr(), c.DTYPE_BFLOAT16, x.shape, x.stride()),
        "one tensor put (packed)": lambda: tv.put(args, "x", x),
        "c.init(DispatchArgs)": lambda: c.init(c.DispatchArgs),
        "ctypes call epcomm_version": lambda: lib.epcomm_version(),
    }
    for name, fn in pieces.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(2000):
            fn()
        f.write(f"{name:36s} {(time.perf_counter() - t0) / 2000 * 1e6:8.2f} us\n")
    torch.cuda.synchronize()


def _profile(ops, iters, path, buffer, x):
    import cProfile
    import io
    import pstats

    import torch

    with open(path, "w") as f:
        _primitives(buffer, x, f)
        for name, op in ops.items():
            prof = cProfile.Profile()
            for _ in range(iters):
                torch.cuda.synchronize()
                prof.enable()
                op()
                prof.disable()
            torch.cuda.synchronize()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            f.write(f"=== {name}: {iters} calls\n{out.getvalue()}\n")


def worker(rank, world, port, tokens, iters, json_path, profile_path):
    import torch
    import torch.distributed as dist

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=torch.device("cuda", rank))
    import epcomm._capi as c
    import epcomm.deep_ep as deep_ep

    H, K, E = 7168, 8, 288 - 288 % world
    ll_bytes = deep_ep.Buffer.get_low_latency_rdma_size_hint(tokens, H, world, E)
    buffer = deep_ep.Buffer(dist.group.WORLD, num_nvl_bytes=1 << 30, num_rdma_bytes=ll_bytes, low_latency_mode=True)
    g = torch.Generator(device="cpu").manual_seed(rank)
    x = torch.randn((tokens, H), generator=g).to("cuda", torch.bfloat16)
    idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(tokens)]).cuda()
    w = torch.rand((tokens, K), generator=g).cuda()
    per_rank, _, per_expert, in_rank, _ = buffer.get_dispatch_layout(idx, E)
    recv_x, _, recv_w, _, handle, _ = buffer.dispatch(x, num_tokens_per_rank=per_rank, is_token_in_rank=in_rank,
                                                      num_tokens_per_expert=per_expert, topk_idx=idx, topk_weights=w)
    ll_recv, _, ll_handle, _, _ = buffer.low_latency_dispatch(x, idx, tokens, E, use_fp8=False)
    ops = {
        "get_dispatch_layout": lambda: buffer.get_dispatch_layout(idx, E),
        "dispatch (cached)": lambda: buffer.dispatch(x, handle=handle),
        "combine": lambda: buffer.combine(recv_x, handle, topk_weights=recv_w),
        "low_latency_dispatch": lambda: buffer.low_latency_dispatch(x, idx, tokens, E),
        "low_latency_combine": lambda: buffer.low_latency_combine(ll_recv, idx, w, ll_handle),
    }
    rows = []
    real = c.library()
    # What the calls are given (their results' other tensors are the outputs they allocate).
    inputs = [x, idx, w, recv_x, recv_w, ll_recv, *handle[:4], *ll_handle[:2]]
    for name, op in ops.items():
        op()  # warm-up (builds the call's template)
        recorder = _Recorder(real)
        c._lib = recorder
        kept = op()  # its outputs stay alive for the bare C calls below
        c._lib = real
        calls = [(fn, args) for fn, args in recorder.calls if fn.__name__ not in ("epcomm_last_error_message",)]
        python_us, c_us, overhead_us = _time_paired(op, lambda: [fn(*args) for fn, args in calls], iters)
        alloc_us = _alloc_us(_fresh_tensors(kept, inputs), iters)
        del kept
        rows.append({"op": name, "tokens": tokens, "python_us": round(python_us, 2), "c_abi_us": round(c_us, 2),
                     "overhead_us": round(overhead_us, 2), "alloc_us": round(alloc_us, 2),
                     "card": torch.cuda.get_device_name(), "ranks": world})
        dist.barrier()
    if profile_path:
        if rank == 0:
            _profile(ops, iters, profile_path, buffer, x)
        else:  # the same calls, so the collective ops find their peer
            for op in ops.values():
                for _ in range(iters):
                    torch.cuda.synchronize()
                    op()
            torch.cuda.synchronize()
        dist.barrier()
    if rank == 0:
        print(f"# epcomm Python overhead, {world} x {torch.cuda.get_device_name()}, {tokens} tokens, hidden {H}, "
              f"median of {iters} alternated pairs (host time of issuing the call; overhead: median of the pairs' "
              "differences)")
        print("# alloc_us: the same outputs allocated by torch.empty_strided alone (part of the overhead)")
        print(f"# {'op':22s} {'python_us':>10s} {'c_abi_us':>10s} {'overhead_us':>12s} {'alloc_us':>9s}")
        for r in rows:
            print(f"  {r['op']:22s} {r['python_us']:10.1f} {r['c_abi_us']:10.1f} {r['overhead_us']:12.1f}"
                  f" {r['alloc_us']:9.1f}")
        if json_path:
            with open(json_path, "w") as f:
                json.dump(rows, f, indent=1)
    buffer.destroy()
    dist.destroy_process_group()


def main():
    import torch.multiprocessing as mp

    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--json", default="")
    p.add_argument("--profile", default="")
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(2, port, a.tokens, a.iters, a.json, a.profile), nprocs=2, join=True)


if __name__ == "__main__":
    main()
