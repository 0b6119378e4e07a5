"""cbn: fast, PyTorch-exact batch normalization for NumPy on the CPU.

Cython kernels parallelised with OpenMP behind a NumPy-facing API: batch
statistics, training and inference forward passes (optionally fused with ReLU),
the backward pass, and folding of running statistics into one per-channel
multiply-add; a stateful layer (:class:`BatchNorm`), folding into Conv/Linear
weights (:func:`fold_into`), and moments for data-parallel statistics.  ONNX
(``cbn.onnx``) and Dask (``cbn.dask``) helpers load their optional dependency on
import.  See ``cbn.show_config()`` for how this build was made.
"""

__version__ = "0.1.0"

from cbn._api import (
    batch_norm,
    batch_norm_backward,
    batch_stats,
    fold,
    merge_moments,
    moments,
    scale_shift,
)
from cbn._config import show_config
from cbn._threads import get_num_threads, set_num_threads
from cbn._fold import fold_into   # not cbn/fold.py: it would shadow cbn.fold()
from cbn.layers import BatchNorm

__all__ = [
    "BatchNorm",
    "batch_norm",
    "batch_norm_backward",
    "batch_stats",
    "fold",
    "fold_into",
    "merge_moments",
    "moments",
    "scale_shift",
    "get_num_threads",
    "set_num_threads",
    "show_config",
]
