"""One rank of the GPU test world (spawned by test_gpu.py with torch.multiprocessing).

Every scenario runs epcomm.deep_ep on this rank and checks it against a pure-PyTorch reference
built from all ranks' inputs (gathered with torch.distributed). A scenario's result is "ok" or
the first failure's message; the parent asserts on them one test per scenario.
"""
import os
import traceback


def _rng(rank, seed):
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(seed * 1000 + rank)
    return g


def _routing(T, K, E, g, masked=True):
    """topk_idx [T, K] int64 of distinct experts, some entries masked (-1)."""
    import torch

    idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)]) if T else torch.empty(
        (0, K), dtype=torch.int64)
    if masked and T:
        idx[torch.rand((T, K), generator=g) < 0.1] = -1
    return idx.to(torch.int64)


def _gather(t, world):
    """All ranks' CPU tensors (rows may differ per rank)."""
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, t.cpu())
    return out


def _expect(cond, what):
    if not cond:
        raise AssertionError(what)


def _equal(a, b, what):
    import torch

    _expect(a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
    _expect(torch.equal(a.cpu(), b.cpu()), f"{what}: values differ")


# ---- normal mode ----
def _normal_inputs(rank, world, T, H, K, E, seed):
    import torch

    g = _rng(rank, seed)
    x = (torch.rand((T, H), generator=g) * 4 - 2).to(torch.bfloat16)
    idx = _routing(T, K, E, g)
    w = torch.rand((T, K), generator=g)
    return x.cuda(), idx.cuda(), w.cuda()


def _reference_dispatch(all_x, all_idx, all_w, rank, world, E):
    """Rows rank receives: by source ascending, tokens ascending; top-k remapped to local ids."""
    import torch

    E_local = E // world
    rows, idx_out, w_out, src = [], [], [], []
    for s in range(world):
        experts = all_idx[s]
        local = (experts >= rank * E_local) & (experts < (rank + 1) * E_local)
        for t in torch.nonzero(local.any(dim=1)).flatten().tolist():
            rows.append(all_x[s][t])
            idx_out.append(torch.where(local[t], experts[t] - rank * E_local, torch.full_like(experts[t], -1)))
            w_out.append(torch.where(local[t], all_w[s][t], torch.zeros_like(all_w[s][t])))
            src.append(t)
    H, K = all_x[0].size(1), all_idx[0].size(1)
    if not rows:
        return (torch.empty((0, H), dtype=all_x[0].dtype), torch.empty((0, K), dtype=torch.int64),
                torch.empty((0, K)), src)
    return torch.stack(rows), torch.stack(idx_out), torch.stack(w_out), src


def scenario_normal(buffer, rank, world, fp8=False, cached=False, worst=False, bias=False, async_mode=False):
    import torch

    import epcomm.deep_ep as deep_ep

    T, H, K, E = 96 + 17 * rank, 2048, 8, 16 * world
    worst_rows = (96 + 17 * (world - 1)) * world + 8  # at least what any rank can receive
    x, idx, w = _normal_inputs(rank, world, T, H, K, E, 7 + fp8 + 2 * cached)
    all_x, all_idx, all_w = _gather(x, world), _gather(idx, world), _gather(w, world)
    prev = deep_ep.Buffer.capture() if async_mode else None
    per_rank, per_rdma, per_expert, in_rank, ev = buffer.get_dispatch_layout(
        idx, E, previous_event=prev, async_finish=async_mode, allocate_on_comm_stream=async_mode)
    if async_mode:
        ev.current_stream_wait()
    want_x, want_idx, want_w, want_src = _reference_dispatch(all_x, all_idx, all_w, rank, world, E)
    for r in range(world):
        _expect(int(per_rank[r]) == int(sum(((all_idx[rank] // (E // world)) == r).any(dim=1))),
                f"num_tokens_per_rank[{r}]")
    if fp8:
        scales = x.float().view(T, H // 128, 128).abs().amax(-1).clamp(min=1e-4) / 448
        x8 = (x.float().view(T, H // 128, 128) / scales.unsqueeze(-1)).view(T, H).to(torch.float8_e4m3fn)
        send = (x8, scales.contiguous())
        all_x8 = _gather(x8.view(torch.uint8), world)
    else:
        send = x
    kwargs = dict(num_tokens_per_rank=per_rank, is_token_in_rank=in_rank, num_tokens_per_expert=per_expert,
                  topk_idx=idx, topk_weights=w, num_worst_tokens=worst_rows if worst else 0,
                  previous_event=deep_ep.Buffer.capture() if async_mode else None, async_finish=async_mode,
                  allocate_on_comm_stream=async_mode)
    recv_x, recv_idx, recv_w, counts, handle, ev = buffer.dispatch(send, **kwargs)
    if async_mode:
        ev.current_stream_wait()
    n = want_x.size(0)
    got = recv_x[0] if fp8 else recv_x
    if worst:
        _expect(got.size(0) == worst_rows, "num_worst_tokens rows")
        _equal(recv_idx[n:], torch.full_like(recv_idx[n:], -1), "padding top-k")
    if fp8:
        want8 = torch.stack([all_x8[s][t] for s in range(world) for t in
                             torch.nonzero(((all_idx[s] // (E // world)) == rank).any(dim=1)).flatten().tolist()]) \
            if n else torch.empty((0, H), dtype=torch.uint8)
        _equal(got[:n].view(torch.uint8), want8, "fp8 rows")
    else:
        _equal(got[:n], want_x, "bf16 rows")
    _equal(recv_idx[:n], want_idx.to(recv_idx.dtype), "recv_topk_idx")
    _equal(recv_w[:n], want_w, "recv_topk_weights")
    _expect(handle[0].shape == (world, world) and handle[0].dtype == torch.int32, "handle[0] is rank_prefix_matrix")
    if not worst:
        E_local = E // world
        _expect(counts == [int(((want_idx == j).any(dim=1)).sum()) for j in range(E_local)],
                "num_recv_tokens_per_expert_list")
    if cached:
        again, *_ = buffer.dispatch(send, handle=handle)
        _equal((again[0] if fp8 else again)[:n].view(torch.uint8), got[:n].view(torch.uint8), "cached dispatch")
    if fp8:
        return
    # Combine of identity experts: each token comes back once per rank it went to.
    rows = recv_x if not worst else recv_x
    b0 = (torch.rand((T, H), generator=_rng(rank, 99)) - 0.5).to(torch.bfloat16).cuda() if bias else None
    combined, combined_w, ev = buffer.combine(rows, handle, topk_weights=recv_w, bias=b0,
                                              previous_event=deep_ep.Buffer.capture() if async_mode else None,
                                              async_finish=async_mode, allocate_on_comm_stream=async_mode)
    if async_mode:
        ev.current_stream_wait()
    ranks_hit = torch.zeros(T, dtype=torch.float32, device="cuda")
    for r in range(world):
        ranks_hit += ((idx // (E // world)) == r).any(dim=1).float() * ((idx >= 0).any(dim=1)).float()
    want = x.float() * ranks_hit.unsqueeze(1)
    if bias:
        want = want + b0.float()
    _equal(combined, want.to(torch.bfloat16), "combined_x (fixed order, one rounding)")
    _equal(combined_w, torch.where(idx >= 0, w, torch.zeros_like(w)), "combined_topk_weights")


# ---- low-latency mode ----
def _ll_inputs(rank, T, H, K, E, seed, hot=None):
    import torch

    g = _rng(rank, seed)
    x = (torch.rand((T, H), generator=g) * 4 - 2).to(torch.bfloat16).cuda()
    idx = _routing(T, K, E, g)
    if hot is not None and T:
        idx[:, 0] = hot
        idx[:, 1:][idx[:, 1:] == hot] = -1
    w = torch.rand((T, K), generator=g).cuda()
    return x, idx.cuda(), w


def _check_ll_dispatch(recv, count, handle, all_x, all_idx, rank, world, E, fp8, ue8m0, round_scale):
    import torch

    src_info, layout_range, n_max, H, _ = handle
    E_local = E // world
    data = recv[0] if fp8 else recv
    for j in range(E_local):
        e = rank * E_local + j
        total = 0
        for s in range(world):
            want_t = torch.nonzero((all_idx[s] == e).any(dim=1)).flatten().tolist()
            r = int(layout_range[j, s])
            begin, n = r >> 32, r & 0xFFFFFFFF
            total += n
            _expect(n == len(want_t), f"layout_range count of expert {j} from rank {s}: {n} vs {len(want_t)}")
            got_t = src_info[j, begin:begin + n].cpu().tolist()
            _expect(sorted(got_t) == want_t, f"src_info of expert {j} from rank {s}")
            for i, t in enumerate(got_t):
                row = data[j, begin + i].cpu()
                ref = all_x[s][t]
                if not fp8:
                    _expect(torch.equal(row, ref), f"bf16 row of expert {j}, rank {s}, token {t}")
                    continue
                if ue8m0:
                    packed = recv[1][j, begin + i].cpu()
                    expo = torch.stack([(packed >> (8 * b)) & 0xFF for b in range(4)], dim=1).flatten()
                    sc = torch.pow(2.0, expo.float() - 127)
                else:
                    sc = recv[1][j, begin + i].cpu()
                deq = row.float().view(-1, 128) * sc.unsqueeze(1)
                amax = ref.float().view(-1, 128).abs().amax(1).clamp(min=1e-4)
                _expect(bool((sc >= amax / 448 * (1 - 1e-6)).all()), "fp8 scale below amax / 448")
                if round_scale:
                    _expect(bool((torch.log2(sc) == torch.round(torch.log2(sc))).all()), "round_scale: power of 2")
                err = (deq - ref.float().view(-1, 128)).abs()
                _expect(bool((err <= 0.07 * ref.float().view(-1, 128).abs() + 2 * sc.unsqueeze(1) / 8).all()),
                        f"fp8 row of expert {j}, rank {s}, token {t} dequantizes far from x")
        _expect(int(count[j]) == total, f"recv_count[{j}]")


def scenario_low_latency(buffer, rank, world, fp8=True, round_scale=False, ue8m0=False, hook=False,
                         zero_copy=False, with_out=False, stats=False, hot=None, idle_rank1=False, async_mode=False):
    import torch

    n_max, H, K, E = 32, 1024 if not ue8m0 else 2048, 8, 8 * world
    T = 0 if (idle_rank1 and rank == 1) else n_max - rank
    x, idx, w = _ll_inputs(rank, T, H, K, E, 31 + 3 * fp8 + ue8m0 + hook, hot)
    all_x, all_idx = _gather(x, world), _gather(idx, world)
    cum = torch.zeros(E // world, dtype=torch.int32, device="cuda") if stats else None
    wait = torch.zeros(world, dtype=torch.int64, device="cuda") if stats else None
    recv, count, handle, ev, hk = buffer.low_latency_dispatch(
        x, idx, n_max, E, cumulative_local_expert_recv_stats=cum, dispatch_wait_recv_cost_stats=wait,
        use_fp8=fp8, round_scale=round_scale, use_ue8m0=ue8m0, async_finish=async_mode, return_recv_hook=hook)
    if hook:
        _expect(hk is not None, "hook returned")
        torch.cuda._sleep(1000)  # stand-in work between send and receive
        hk()
    if async_mode:
        ev.current_stream_wait()
    torch.cuda.synchronize()
    _check_ll_dispatch(recv, count, handle, all_x, all_idx, rank, world, E, fp8, ue8m0, round_scale)
    if stats:
        _equal(cum, count, "cumulative_local_expert_recv_stats")
        _expect(bool((wait >= 0).all()), "dispatch_wait_recv_cost_stats")
    if fp8:
        return
    # Identity experts: the expert output is the received BF16 row; combine weights them.
    if zero_copy:
        buf = buffer.get_next_low_latency_combine_buffer(handle)
        buf.copy_(recv)
    out = torch.empty((T, H), dtype=torch.bfloat16, device="cuda") if with_out else None
    combined, ev, hk = buffer.low_latency_combine(recv, idx, w, handle, zero_copy=zero_copy, async_finish=async_mode,
                                                  return_recv_hook=hook, out=out)
    if hook:
        hk()
    if async_mode:
        ev.current_stream_wait()
    if with_out:
        _expect(combined.data_ptr() == out.data_ptr(), "combine wrote into out=")
    want = (x.float() * torch.where(idx >= 0, w, torch.zeros_like(w)).sum(1, keepdim=True)).to(torch.bfloat16)
    err = (combined.float() - want.float()).abs()
    _expect(bool((err <= want.float().abs() * 0.02 + 1e-2).all()), "low-latency combine vs weighted sum")


def scenario_cuda_graph(buffer, rank, world, replays=1000):
    """Dispatch, a stand-in expert (x * 2) and combine captured in one graph, replayed with new inputs."""
    import torch

    n_max, H, K, E = 16, 1024, 4, 4 * world
    g = _rng(rank, 5)
    static_x = torch.zeros((n_max, H), dtype=torch.bfloat16, device="cuda")
    idx = _routing(n_max, K, E, g).cuda()
    w = torch.rand((n_max, K), generator=g).cuda()
    # Warm up outside the graph (the first call of a shape sets up the buffer).
    recv, _, handle, _, _ = buffer.low_latency_dispatch(static_x, idx, n_max, E, use_fp8=False)
    buffer.low_latency_combine(recv * 2, idx, w, handle)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        recv, _, handle, _, _ = buffer.low_latency_dispatch(static_x, idx, n_max, E, use_fp8=False)
        expert_out = recv * 2
        combined, _, _ = buffer.low_latency_combine(expert_out, idx, w, handle)
    wsum = torch.where(idx >= 0, w, torch.zeros_like(w)).sum(1, keepdim=True)
    bad = torch.zeros((), dtype=torch.int64, device="cuda")
    for i in range(replays):
        static_x.copy_((torch.rand((n_max, H), device="cuda") * 4 - 2).to(torch.bfloat16))
        graph.replay()
        want = static_x.float() * 2 * wsum
        bad += ((combined.float() - want).abs() > want.abs() * 0.02 + 1e-2).any().to(torch.int64)
    torch.cuda.synchronize()
    _expect(int(bad) == 0, f"{int(bad)} of {replays} graph replays differ from the reference")


def scenario_destroy(buffer, rank, world):
    """Explicit destroy, and a Buffer dropped without destroy (garbage collection)."""
    import gc

    import torch.distributed as dist

    import epcomm.deep_ep as deep_ep

    gloo = dist.new_group(backend="gloo")  # bootstrap over a Gloo group too
    b = deep_ep.Buffer(gloo, num_nvl_bytes=1 << 24, explicitly_destroy=True)
    b.destroy()
    b.destroy()  # a second destroy is a no-op
    b2 = deep_ep.Buffer(gloo, num_nvl_bytes=1 << 24)
    del b2
    gc.collect()
    dist.barrier()


SCENARIOS = {
    "normal_bf16": lambda b, r, w: scenario_normal(b, r, w),
    "normal_fp8": lambda b, r, w: scenario_normal(b, r, w, fp8=True),
    "normal_cached_fp8": lambda b, r, w: scenario_normal(b, r, w, fp8=True, cached=True),
    "normal_cached_bf16_bias": lambda b, r, w: scenario_normal(b, r, w, cached=True, bias=True),
    "normal_worst_tokens": lambda b, r, w: scenario_normal(b, r, w, worst=True),
    "normal_async_comm_stream": lambda b, r, w: scenario_normal(b, r, w, async_mode=True),
    "ll_fp8": lambda b, r, w: scenario_low_latency(b, r, w, stats=True),
    "ll_fp8_round_scale": lambda b, r, w: scenario_low_latency(b, r, w, round_scale=True),
    "ll_fp8_ue8m0": lambda b, r, w: scenario_low_latency(b, r, w, round_scale=True, ue8m0=True),
    "ll_bf16_combine": lambda b, r, w: scenario_low_latency(b, r, w, fp8=False, with_out=True),
    "ll_bf16_hook_zero_copy": lambda b, r, w: scenario_low_latency(b, r, w, fp8=False, hook=True, zero_copy=True),
    "ll_bf16_skewed_idle_rank": lambda b, r, w: scenario_low_latency(b, r, w, fp8=False, hot=1, idle_rank1=True),
    "ll_async_finish": lambda b, r, w: scenario_low_latency(b, r, w, fp8=False, async_mode=True),
    "ll_cuda_graph": lambda b, r, w: scenario_cuda_graph(b, r, w),
    "destroy_and_gc": lambda b, r, w: scenario_destroy(b, r, w),
}


def run(rank, world, port, results):
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    os.environ.setdefault("EPCOMM_TIMEOUT_SECONDS", "20")  # a broken scenario fails in seconds
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=torch.device("cuda", rank % torch.cuda.device_count()))
    import epcomm.deep_ep as deep_ep

    ll_bytes = deep_ep.Buffer.get_low_latency_rdma_size_hint(32, 2048, world, 8 * world)
    buffer = deep_ep.Buffer(dist.group.WORLD, num_nvl_bytes=256 << 20, num_rdma_bytes=ll_bytes,
                            low_latency_mode=True)
    for name, fn in SCENARIOS.items():
        try:
            fn(buffer, rank, world)
            status = "ok"
        except Exception as e:  # the parent reports it as this scenario's failure
            status = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
        results[f"{name}/{rank}"] = status
        dist.barrier()
        if status != "ok" and "timed out" in status:
            break  # a failed collective leaves the Buffer unusable
    buffer.destroy()
    dist.destroy_process_group()
