#!/usr/bin/env python3
"""Draws GB/s against tokens per rank (epcomm dispatch/combine, NCCL, ceiling) from the
benchmark JSON: python3 scripts/plot_bench.py bench/results/<card>-x<gpus>.json out.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    records = json.load(open(src))
    sms = 24
    series = {
        "epcomm dispatch bf16 (cached)": ("dispatch", "bf16"),
        "epcomm dispatch fp8 (cached)": ("dispatch", "fp8"),
        "epcomm combine bf16": ("combine", "bf16"),
        "NCCL send/recv bf16": ("nccl_dispatch", "bf16"),
        "NCCL send/recv fp8": ("nccl_dispatch", "fp8"),
        "NVLink ceiling (SM push)": ("ceiling", "bf16"),
    }
    fig, ax = plt.subplots(figsize=(8, 5))
    card = ""
    ranks = max((r["ranks"] for r in records), default=0)  # the file may hold 2-rank runs too
    for label, (op, dtype) in series.items():
        pts = {}
        for r in records:
            if (r["op"] == op and r["dtype"] == dtype and r["sms"] == sms and r["hidden"] == 7168
                    and r["ranks"] == ranks):
                pts[r["tokens"]] = r["gbps"]
                card = r["card"]
        if pts:
            xs = sorted(pts)
            ax.plot(xs, [pts[x] for x in xs], marker="o", label=label,
                    linestyle="--" if op != "dispatch" and op != "combine" else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens per rank (hidden 7168, top-8 of 256 experts, uniform)")
    ax.set_ylabel("GB/s per rank (DeepEP byte accounting)")
    ax.set_title(f"epcomm normal kernels, {ranks} x {card}, {sms} SMs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
