#!/usr/bin/env python3
"""Prints the issues' target tables from benchmark JSON (epcomm_bench records):

    python3 scripts/targets.py bench/results/h200-x4.json [more.json ...]

Normal kernels at 4096 tokens, hidden 7168, top-8 of 256 (targets per GPU count, issue 3) and
low-latency kernels at 128 tokens, hidden 7168, top-8 of 288 (issue 4), each next to the
same-run NCCL and ceiling records. Settings or GPU counts without records are left out.
"""
import json
import sys

NORMAL = {  # ranks -> (op, dtype, sms) -> minimum GB/s
    2: {("dispatch", "bf16", 24): 405, ("dispatch", "fp8", 24): 295, ("combine", "bf16", 24): 345,
        ("dispatch", "bf16", 12): 339, ("dispatch", "fp8", 12): 246, ("combine", "bf16", 12): 286},
    4: {("dispatch", "bf16", 24): 315, ("dispatch", "fp8", 24): 305, ("combine", "bf16", 24): 425,
        ("dispatch", "bf16", 12): 262, ("dispatch", "fp8", 12): 255, ("combine", "bf16", 12): 356},
}
LOW_LATENCY = {2: {"ll_dispatch": 21.0, "ll_combine": 30.0}, 4: {"ll_dispatch": 25.0, "ll_combine": 42.0}}


def find(records, **want):
    for r in records:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def main(paths):
    records = [r for p in paths for r in json.load(open(p))]
    for ranks in sorted({r["ranks"] for r in records}):
        rs = [r for r in records if r["ranks"] == ranks]
        card = rs[0]["card"]
        commits = sorted({r["commit"] for r in rs})
        print(f"## {ranks} x {card} (commit {', '.join(commits)})")
        base = dict(tokens=4096, hidden=7168, topk=8, experts=256)
        layout = find(rs, op="layout", sms=24, **base)
        if layout:
            print(f"layout: {layout['time_us']:.1f} us (target <= 20 us: {'met' if layout['time_us'] <= 20 else 'no'})")
        print("| op | dtype | SMs | epcomm | target | met | NCCL same rows | ceiling |")
        print("|---|---|---|---|---|---|---|---|")
        for (op, dtype, sms), target in NORMAL.get(ranks, {}).items():
            r = find(rs, op=op, dtype=dtype, sms=sms, **base)
            if r is None:
                continue
            nccl = find(rs, op="nccl_dispatch", dtype=dtype, sms=sms, **base)
            ceiling = find(rs, op="ceiling", sms=sms, **base)
            fmt = lambda x: f"{x['time_us']:.1f} us, {x['gbps']:.1f} GB/s" if x else "-"  # noqa: E731
            print(f"| {op} | {dtype} | {sms} | {fmt(r)} ({r['commit']}) | >= {target} | {'yes' if r['gbps'] >= target else 'no'} | "
                  f"{fmt(nccl) if op == 'dispatch' else '-'} | {fmt(ceiling) if dtype == 'bf16' and op == 'dispatch' else '-'} |")
        ll_base = dict(tokens=128, hidden=7168, topk=8, experts=288)
        rows = [(op, target, find(rs, op=op, **ll_base)) for op, target in LOW_LATENCY.get(ranks, {}).items()]
        if any(r for _, _, r in rows):
            # Two clocks: CUDA events around the call (what a caller waits, launch included) and
            # the kernel's own duration as a profiler records it (CUPTI), which is how DeepEP's
            # figures, and so the targets, were measured (baselines.md).
            print("| low-latency op | epcomm events | epcomm kernel | target | met (kernel / events) | NCCL events | NCCL kernel |")
            print("|---|---|---|---|---|---|---|")
            us = lambda x: f"{x['time_us']:.1f} us" if x else "-"  # noqa: E731
            for op, target, r in rows:
                if r is None:
                    continue
                kernel = find(rs, op=op + "_kernel", **ll_base)
                nccl = find(rs, op="nccl_" + op, **ll_base)
                nccl_kernel = find(rs, op="nccl_" + op + "_kernel", **ll_base)
                met_kernel = ("yes" if kernel["time_us"] <= target else "no") if kernel else "-"
                met = "yes" if r["time_us"] <= target else "no"
                print(f"| {op} | {us(r)} ({r['commit']}) | {us(kernel)} | <= {target} us | {met_kernel} / {met} | "
                      f"{us(nccl)} | {us(nccl_kernel)} |")
        print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
