"""Start-up cost: load numba's registries without importing scipy.linalg and cffi.

Why: the first call of any numba kernel (even one loaded from the on-disk cache) installs
numba's target registries, and `numba.np.arraymath` runs `_check_blas()` at import, which
imports `scipy.linalg` (and with it numpy.f2py, unittest, charset_normalizer...): about
0.2-0.5 s of CPU and 16 MB of RSS in every `netdiag` run, measured with `python -X importtime`
on this 2-core VM. The result (`_HAVE_BLAS`) only picks a BLAS inner product for
`np.correlate`/`np.convolve` inside jitted code, which netdiag does not use; `np.dot` and
`np.linalg` in jitted code still import scipy when they are compiled. So we import
`numba.np.arraymath` once with `scipy.linalg` hidden, then un-hide it: a later
`import scipy.linalg` (e.g. netdiag.compare's scipy.stats) works as usual.

Likewise `numba.core.typing.cffi_utils` imports cffi and builds a `cffi.FFI()` (which imports
pycparser) so that jitted code could call cffi functions, which netdiag's kernels do not: 0.03 s
CPU per run. It is imported here with `cffi` hidden (numba then treats cffi as absent), and cffi
imports as usual afterwards.
"""

from __future__ import annotations

import importlib
import sys

# numba module -> the optional import it makes that netdiag does not need
_HIDDEN = {"numba.np.arraymath": "scipy.linalg", "numba.core.typing.cffi_utils": "cffi"}


def load_numba_without_optional_imports() -> None:
    """Import numba's array-math and cffi registries with scipy.linalg and cffi hidden (each a no-op
    when the numba module or the hidden one is loaded already)."""
    for module, hidden in _HIDDEN.items():
        if module in sys.modules or hidden in sys.modules:
            continue
        sys.modules[hidden] = None  # type: ignore[assignment]  # makes the import raise ImportError
        try:
            importlib.import_module(module)
        finally:
            if sys.modules.get(hidden, 0) is None:
                del sys.modules[hidden]
