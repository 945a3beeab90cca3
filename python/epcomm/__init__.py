"""epcomm: expert-parallel communication for Mixture-of-Experts models.

The Python package is pure Python over epcomm's C ABI (ctypes); the compiled library ships inside
the package and never links libtorch. The DeepEP-compatible ``epcomm.deep_ep`` module arrives with
the Python-package issue; this module already loads the library and reports its version.
"""
import ctypes
import os

__all__ = ["library", "version"]

_lib = None


def library() -> ctypes.CDLL:
    """The loaded libepcomm (next to this file when installed, else EPCOMM_LIBRARY)."""
    global _lib
    if _lib is None:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.environ.get("EPCOMM_LIBRARY") or os.path.join(here, "libepcomm.so")
        _lib = ctypes.CDLL(path)
        _lib.epcomm_version.restype = ctypes.c_char_p
    return _lib


def version() -> str:
    return library().epcomm_version().decode()
