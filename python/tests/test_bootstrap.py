"""The all-gather adapters the Buffer bootstraps through (no GPU, no torch, no MPI needed):
an mpi4py-style communicator is stood in for by an object with the same allgather method."""
import ctypes

from epcomm import _torch_views as tv


class _FakeComm:
    """Rank `rank` of a world whose other ranks contributed `others` (mpi4py's allgather shape)."""

    def __init__(self, rank, others):
        self.rank, self.others = rank, others

    def allgather(self, blob):
        out = list(self.others)
        out.insert(self.rank, blob)
        return out


def _call(gather, mine, world):
    n = len(mine)
    src = ctypes.create_string_buffer(mine, n)
    dst = ctypes.create_string_buffer(n * world)
    status = gather(ctypes.cast(src, ctypes.c_void_p), ctypes.cast(dst, ctypes.c_void_p), n, None)
    return status, dst.raw


def test_mpi_all_gather_places_every_rank_in_rank_order():
    gather = tv.mpi_all_gather(_FakeComm(1, [b"AAAA", b"CCCC"]))
    status, out = _call(gather, b"BBBB", 3)
    assert status == 0
    assert out == b"AAAABBBBCCCC"


def test_mpi_all_gather_reports_a_failing_communicator_as_an_error_status():
    class Broken:
        def allgather(self, blob):
            raise RuntimeError("MPI down")

    status, _ = _call(tv.mpi_all_gather(Broken()), b"xx", 2)
    assert status != 0


def test_mpi_all_gather_rejects_a_rank_with_a_different_message_size():
    status, _ = _call(tv.mpi_all_gather(_FakeComm(0, [b"longer-blob"])), b"abcd", 2)
    assert status == 2
