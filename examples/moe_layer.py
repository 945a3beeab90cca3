"""A small MoE layer on epcomm.deep_ep, checked against a dense single-GPU computation.

    python3 examples/moe_layer.py [--ranks N]      (one process per GPU, N <= GPUs, default all)

Each rank routes its tokens (router + top-k softmax), sends them to the ranks that hold their
experts, runs its local experts (one matrix each) and brings the outputs back:
  - normal mode: get_dispatch_layout, dispatch, expert matmuls weighted on the expert side,
    combine (an unweighted sum);
  - low-latency mode: low_latency_dispatch with return_recv_hook, independent work on the GPU
    while the data moves, hook(), expert matmuls on the packed rows, low_latency_combine (the
    weighted sum) with its hook.
Every rank knows every expert's weights (same seed), so it also computes its tokens' output
densely and compares (BF16 matmuls: relative tolerance 2 %). Prints one line per rank and mode.
"""
import argparse
import os
import socket


def make_weights(H, E, device):
    import torch

    g = torch.Generator(device="cpu").manual_seed(1234)
    router = torch.randn((H, E), generator=g) / H**0.5
    experts = torch.randn((E, H, H), generator=g) / H**0.5
    return router.to(device, torch.bfloat16), experts.to(device, torch.bfloat16)


def route(x, router, K):
    import torch

    logits = (x @ router).float()
    weights, idx = torch.topk(torch.softmax(logits, dim=-1), K, dim=-1)
    return idx.to(torch.int64), (weights / weights.sum(-1, keepdim=True)).float()


def dense_reference(x, idx, w, experts):
    import torch

    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for k in range(idx.size(1)):
        out += w[:, k:k + 1] * torch.bmm(x.unsqueeze(1), experts[idx[:, k]]).squeeze(1).float()
    return out.to(torch.bfloat16)


def normal_mode(buffer, x, idx, w, experts, rank, world):
    import torch

    E = experts.size(0)
    E_local = E // world
    per_rank, _, per_expert, in_rank, _ = buffer.get_dispatch_layout(idx, E)
    recv_x, recv_idx, recv_w, _, handle, _ = buffer.dispatch(
        x, num_tokens_per_rank=per_rank, is_token_in_rank=in_rank, num_tokens_per_expert=per_expert,
        topk_idx=idx, topk_weights=w)
    # Expert side: each received row times every local expert it chose, weighted (normal combine
    # sums unweighted).
    y = torch.zeros(recv_x.shape, dtype=torch.float32, device=x.device)
    for j in range(E_local):
        rows, slots = torch.nonzero(recv_idx == j, as_tuple=True)
        if rows.numel():
            y[rows] += recv_w[rows, slots].unsqueeze(1) * (recv_x[rows] @ experts[rank * E_local + j]).float()
    out, _, _ = buffer.combine(y.to(torch.bfloat16), handle)
    return out


def low_latency_mode(buffer, x, idx, w, experts, rank, world, n_max):
    import torch

    E = experts.size(0)
    E_local = E // world
    recv_x, count, handle, _, hook = buffer.low_latency_dispatch(x, idx, n_max, E, use_fp8=False,
                                                                 return_recv_hook=True)
    side = torch.randn((2048, 2048), device=x.device, dtype=torch.bfloat16)
    side = side @ side  # independent work while the tokens travel (no SMs held by epcomm)
    hook()
    y = torch.zeros_like(recv_x)
    for j in range(E_local):
        n = int(count[j])
        if n:
            y[j, :n] = recv_x[j, :n] @ experts[rank * E_local + j]
    out, _, hook = buffer.low_latency_combine(y, idx, w, handle, return_recv_hook=True)
    hook()
    return out


def worker(rank, world, port, H, K, tokens):
    import torch
    import torch.distributed as dist

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=torch.device("cuda", rank))
    import epcomm.deep_ep as deep_ep

    E = 4 * world
    router, experts = make_weights(H, E, "cuda")
    g = torch.Generator(device="cpu").manual_seed(rank)
    ll_bytes = deep_ep.Buffer.get_low_latency_rdma_size_hint(tokens, H, world, E)
    buffer = deep_ep.Buffer(dist.group.WORLD, num_nvl_bytes=256 << 20, num_rdma_bytes=ll_bytes,
                            low_latency_mode=True)
    ok = True
    for mode in ("normal", "low-latency"):
        x = torch.randn((tokens - rank, H), generator=g).to("cuda", torch.bfloat16)
        idx, w = route(x, router, K)
        if mode == "normal":
            out = normal_mode(buffer, x, idx, w, experts, rank, world)
        else:
            out = low_latency_mode(buffer, x, idx, w, experts, rank, world, tokens)
        want = dense_reference(x, idx, w, experts)
        err = ((out.float() - want.float()).norm() / want.float().norm().clamp(min=1e-6)).item()
        good = err < 0.02
        ok = ok and good
        print(f"[rank {rank}] {mode:11s} MoE layer: {x.size(0)} tokens, {E} experts on {world} ranks, "
              f"top-{K}: relative error vs dense {err:.2e} -> {'ok' if good else 'MISMATCH'}", flush=True)
    buffer.destroy()
    dist.destroy_process_group()
    if not ok:
        raise SystemExit(1)


def main():
    import torch
    import torch.multiprocessing as mp

    p = argparse.ArgumentParser()
    p.add_argument("--ranks", type=int, default=torch.cuda.device_count())
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--tokens", type=int, default=64)
    a = p.parse_args()
    if a.ranks < 2 or a.ranks > torch.cuda.device_count():
        raise SystemExit(f"moe_layer.py: --ranks: expected 2..{torch.cuda.device_count()} (visible GPUs), got {a.ranks}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(a.ranks, port, a.hidden, a.topk, a.tokens), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()
