"""epcomm: expert-parallel communication for Mixture-of-Experts models.

Pure Python over epcomm's C ABI (ctypes, `epcomm._capi`); the compiled library ships inside the
package and never links libtorch, so one build serves every Python and torch version. The
DeepEP-compatible `epcomm.deep_ep` module is the Python-package issue's work.
"""
from epcomm._capi import EpcommError, library  # noqa: F401

__all__ = ["EpcommError", "library", "version"]


def version() -> str:
    """Version of the loaded library ("0.1.0")."""
    return library().epcomm_version().decode()
