"""epcomm.deep_ep on GPUs against a pure-PyTorch reference (every method, both modes).

One world of processes (torch.multiprocessing, one per GPU, up to 4) runs every scenario of
gpu_worker.py once; each test below asserts one scenario on every rank. Skipped, with the reason,
where torch or two GPUs are missing (the CPU-only CI).
"""
import os
import socket
import sys

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (GPU tests need PyTorch)")
if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
    pytest.skip("needs at least 2 CUDA GPUs", allow_module_level=True)

sys.path.insert(0, os.path.dirname(__file__))
import gpu_worker  # noqa: E402

WORLD = min(torch.cuda.device_count(), int(os.environ.get("EPCOMM_PY_TEST_RANKS", "4")))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def results():
    import torch.multiprocessing as mp

    manager = mp.Manager()
    shared = manager.dict()
    mp.spawn(gpu_worker.run, args=(WORLD, _free_port(), shared), nprocs=WORLD, join=True)
    return dict(shared)


@pytest.mark.parametrize("scenario", list(gpu_worker.SCENARIOS))
def test_scenario(results, scenario):
    failures = {r: results.get(f"{scenario}/{r}", "not run (an earlier scenario broke the world)")
                for r in range(WORLD)}
    bad = {r: s for r, s in failures.items() if s != "ok"}
    assert not bad, f"{scenario} on {WORLD} ranks: " + "; ".join(f"rank {r}: {s}" for r, s in bad.items())
