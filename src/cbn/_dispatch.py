"""Which build of the kernels this process uses.

On x86-64, cbn ships the kernels twice: ``_kernels`` (portable baseline, SSE2)
and ``_kernels_avx2`` (AVX2 + FMA + F16C).  At import the AVX2 build is chosen
when the CPU runs it; ``CBN_SIMD=baseline`` in the environment forces the
portable one (for comparisons and debugging).
"""

import os

from cbn import _kernels as baseline

VARIANTS = {"baseline": baseline}
try:
    from cbn import _kernels_avx2
except ImportError:  # not built for this platform
    _kernels_avx2 = None
if _kernels_avx2 is not None and baseline.cpu_has_avx2():
    VARIANTS["avx2"] = _kernels_avx2

_choice = os.environ.get("CBN_SIMD", "auto").strip().lower()
if _choice not in ("auto", "baseline", "avx2"):
    raise ImportError(f"CBN_SIMD must be auto, baseline or avx2, got {_choice!r}")
if _choice == "avx2" and "avx2" not in VARIANTS:
    raise ImportError("CBN_SIMD=avx2 but the AVX2 kernels are not available on this "
                      "machine or build")

kernels = VARIANTS["avx2"] if _choice != "baseline" and "avx2" in VARIANTS else baseline


def use(name):
    """Switch the kernels this process uses ("baseline" or "avx2"); returns the old name."""
    global kernels
    old = active()
    kernels = VARIANTS[name]
    return old


def active():
    return "avx2" if kernels is VARIANTS.get("avx2") else "baseline"
