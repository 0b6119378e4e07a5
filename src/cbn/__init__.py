"""cbn: fast, PyTorch-exact batch normalization for NumPy on the CPU.

Cython kernels parallelised with OpenMP behind a NumPy-facing API: batch
statistics, training and inference forward passes (optionally fused with ReLU),
the backward pass, and folding of running statistics into one per-channel
multiply-add.  See ``cbn.show_config()`` for how this build was made.
"""

__version__ = "0.1.0"

from cbn._api import (
    batch_norm,
    batch_norm_backward,
    batch_stats,
    fold,
    scale_shift,
)
from cbn._threads import get_num_threads, set_num_threads, show_config

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "batch_stats",
    "fold",
    "scale_shift",
    "get_num_threads",
    "set_num_threads",
    "show_config",
]
