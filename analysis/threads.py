"""Keep BLAS single-threaded during many tiny fits.

SciPy's L-BFGS-B calls BLAS on vectors of a handful of elements; a multi-threaded OpenBLAS
then spends its time waking threads (10x slower on a busy 2-core machine, measured). The fitter
runs inside :func:`single_blas_thread`, which uses ``threadpoolctl`` when it is installed and is
a no-op otherwise.
"""

from __future__ import annotations

import contextlib
import functools


@functools.lru_cache(maxsize=1)
def _controller():
    """The process-wide threadpoolctl controller, or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def single_blas_thread():
    """Context in which BLAS libraries use one thread (restored afterwards)."""
    ctrl = _controller()
    if ctrl is None:
        yield
        return
    with ctrl.limit(limits=1, user_api="blas"):
        yield
