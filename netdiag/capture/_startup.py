"""Start-up cost: load numba's array-math registry without importing scipy.linalg.

Why: the first call of any numba kernel (even one loaded from the on-disk cache) installs
numba's target registries, and `numba.np.arraymath` runs `_check_blas()` at import, which
imports `scipy.linalg` (and with it numpy.f2py, unittest, charset_normalizer...): about
0.2-0.5 s of CPU and 16 MB of RSS in every `netdiag` run, measured with `python -X importtime`
on this 2-core VM. The result (`_HAVE_BLAS`) only picks a BLAS inner product for
`np.correlate`/`np.convolve` inside jitted code, which netdiag does not use; `np.dot` and
`np.linalg` in jitted code still import scipy when they are compiled. So we import
`numba.np.arraymath` once with `scipy.linalg` hidden, then un-hide it: a later
`import scipy.linalg` (e.g. netdiag.compare's scipy.stats) works as usual.
"""

from __future__ import annotations

import sys

_HIDDEN = "scipy.linalg"


def load_numba_without_scipy_linalg() -> None:
    """Import numba's array-math registry with scipy.linalg hidden (no-op if either is loaded)."""
    if "numba.np.arraymath" in sys.modules or _HIDDEN in sys.modules:
        return
    sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # makes the import raise ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get(_HIDDEN, 0) is None:
            del sys.modules[_HIDDEN]
