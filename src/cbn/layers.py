"""A stateful batch-norm layer with PyTorch's ``nn.BatchNorm1d/2d/3d`` semantics."""

import numbers
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from cbn._api import _invstd, batch_norm, batch_norm_backward, fold, scale_shift

_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


class BatchNorm:
    """Batch normalization over any channel axis, as ``torch.nn.BatchNorm1d/2d/3d``.

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    eps : float >= 0
    momentum : float in [0, 1], or None
        Weight of the batch statistics in the running ones; None: the cumulative
        moving average (``1 / num_batches_tracked``), as PyTorch.
    affine : bool
        Learnable ``weight`` (gamma) and ``bias`` (beta).
    track_running_stats : bool
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked``.  Without
        them the batch statistics are used in eval mode too.
    axis : int
        The channel axis of the inputs (1: NCHW and (N, C, ...); -1: channels-last).
    relu : bool
        Fuse ``max(y, 0)`` into the forward pass (and mask the backward pass).
    dtype : float16, float32 or float64
        The parameters' and running statistics' dtype.

    Attributes
    ----------
    training : bool
    weight, bias : ndarray of shape (C,) or None
    running_mean, running_var : ndarray of shape (C,) or None
    num_batches_tracked : 0-d int64 ndarray or None
    grad_weight, grad_bias : ndarray of shape (C,) or None
        Set by :meth:`backward`.

    Examples
    --------
    >>> import numpy as np, cbn
    >>> bn = cbn.BatchNorm(3)
    >>> x = np.random.default_rng(0).standard_normal((8, 3, 4, 4)).astype(np.float32)
    >>> y = bn(x)                         # training: batch statistics, running ones updated
    >>> dx = bn.backward(np.ones_like(y))
    >>> bn.grad_bias
    array([128., 128., 128.], dtype=float32)
    >>> int(bn.num_batches_tracked)
    1
    >>> y_eval = bn.eval()(x)             # running statistics
    """

    def __init__(self, num_features, *, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, axis=1, relu=False, dtype=np.float32):
        if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral) \
                or num_features < 1:
            raise ValueError(f"num_features must be an integer >= 1, got {num_features!r}")
        if momentum is not None and (isinstance(momentum, bool)
                                     or not isinstance(momentum, numbers.Real)
                                     or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum must be None or a number in [0, 1], got {momentum!r}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 <= eps < np.inf:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        for name, v in (("affine", affine), ("track_running_stats", track_running_stats),
                        ("relu", relu)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {v!r}")
        dt = np.dtype(dtype)
        if dt not in _DTYPES:
            raise TypeError(f"dtype must be float16, float32 or float64, got {dt}")
        C = int(num_features)
        self.num_features, self.eps, self.momentum = C, float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.axis, self.relu, self.dtype = int(axis), bool(relu), dt
        self.weight = np.ones(C, dt) if self.affine else None
        self.bias = np.zeros(C, dt) if self.affine else None
        if self.track_running_stats:
            self.running_mean = np.zeros(C, dt)
            self.running_var = np.ones(C, dt)
            self.num_batches_tracked = np.zeros((), np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self.training = True
        self.grad_weight = self.grad_bias = None
        self._saved = None      # what backward() needs from the last forward pass
        self._folded = None     # (scale, shift) after freeze()

    def __repr__(self):
        return (f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}, "
                f"axis={self.axis}, relu={self.relu}, dtype={self.dtype.name})")

    # ------------------------------------------------------------- modes

    def train(self, mode=True):
        """Training mode (batch statistics); ``train(False)`` is :meth:`eval`.  Leaves
        the folded path of :meth:`freeze`.  Returns self."""
        self.training = bool(mode)
        if self.training:
            self._folded = None
        return self

    def eval(self):
        """Inference mode: the running statistics (the batch's without them).  Returns self."""
        return self.train(False)

    def fold(self):
        """``(scale, shift)`` with ``y = x * scale + shift`` in inference mode."""
        if not self.track_running_stats:
            raise ValueError("fold() needs running statistics (track_running_stats=True)")
        return fold(self.running_mean, self.running_var, self.weight, self.bias, eps=self.eps)

    def freeze(self):
        """Switch to inference on the folded per-channel multiply-add (:func:`cbn.scale_shift`).

        The folded values are computed now; :meth:`train` unfreezes.  Returns self.
        """
        self._folded = self.fold()
        self.training = False
        return self

    # ------------------------------------------------------------- passes

    def __call__(self, x, out=None):
        """Forward pass on x (channels at ``axis``); returns y (``out`` when given)."""
        x = np.asarray(x)
        if x.ndim >= 2 and -x.ndim <= self.axis < x.ndim \
                and x.shape[self.axis] != self.num_features:
            raise ValueError(f"x has {x.shape[self.axis]} channels at axis {self.axis}, "
                             f"the layer has num_features={self.num_features}")
        in_place = out is not None and np.may_share_memory(out, x)
        if self._folded is not None:
            y = scale_shift(x, *self._folded, axis=self.axis, relu=self.relu, out=out)
            mean, invstd = self.running_mean, None
            batch = False
        else:
            batch = self.training or not self.track_running_stats
            update = self.training and self.track_running_stats
            factor = 0.0
            if update:
                self.num_batches_tracked += 1
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
            y, mean, invstd = batch_norm(
                x, self.running_mean if update or not batch else None,
                self.running_var if update or not batch else None, self.weight, self.bias,
                training=batch, momentum=factor, eps=self.eps, axis=self.axis,
                relu=self.relu, out=out, return_stats=True)
        self._saved = None if in_place else (x, y if self.relu else None, mean, invstd, batch)
        return y

    forward = __call__

    def backward(self, dy, out=None):
        """Gradient with respect to the last forward pass's input.

        Stores ``grad_weight`` and ``grad_bias`` (when affine) and returns dx.
        """
        if self._saved is None:
            raise RuntimeError("backward() needs the input of a forward pass: call the layer "
                               "first, without out= overwriting its input")
        x, y, mean, invstd, batch = self._saved
        if invstd is None:  # folded forward: the running statistics
            invstd = _invstd(self.running_var, self.eps)
        dx, dw, db = batch_norm_backward(dy, x, mean, invstd, self.weight, training=batch,
                                         y=y, axis=self.axis, out=out)
        if self.affine:
            self.grad_weight, self.grad_bias = dw.astype(self.dtype), db.astype(self.dtype)
        return dx

    # ------------------------------------------------------------- state

    def _state_names(self):
        return ((["weight", "bias"] if self.affine else [])
                + (["running_mean", "running_var", "num_batches_tracked"]
                   if self.track_running_stats else []))

    def state_dict(self):
        """The state under PyTorch's keys (copies): weight, bias, running_mean,
        running_var, num_batches_tracked (those the configuration has)."""
        return OrderedDict((k, np.array(getattr(self, k), copy=True))
                           for k in self._state_names())

    def load_state_dict(self, state, strict=True):
        """Load a state (a dict such as ``{k: v.numpy() for k, v in
        module.state_dict().items()}``, or what ``np.load`` gives for an ``.npz``).

        With ``strict``, unexpected keys are errors; ``num_batches_tracked`` may be
        absent (old checkpoints), as in PyTorch.  Nothing is changed if an error is
        raised.
        """
        if not isinstance(state, Mapping) and not hasattr(state, "keys"):
            raise TypeError(f"state must be a mapping, got {type(state).__name__}")
        names = self._state_names()
        keys = set(state.keys())
        missing = [k for k in names if k not in keys and k != "num_batches_tracked"]
        unexpected = sorted(keys - set(names))
        if missing or (strict and unexpected):
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        new = {}
        for k in names:
            if k not in keys:
                continue
            v = np.asarray(state[k])
            want = () if k == "num_batches_tracked" else (self.num_features,)
            if v.shape != want:
                raise ValueError(f"state_dict[{k!r}] has shape {v.shape}, expected {want}")
            kinds = ("i", "u") if k == "num_batches_tracked" else ("f",)
            if v.dtype.kind not in kinds:
                raise TypeError(f"state_dict[{k!r}] has dtype {v.dtype}, expected "
                                + ("an integer" if k == "num_batches_tracked" else "a float"))
            new[k] = v
        for k, v in new.items():
            getattr(self, k)[...] = v
        if "num_batches_tracked" in names and "num_batches_tracked" not in keys:
            self.num_batches_tracked[...] = 0
        self._folded = None

    @classmethod
    def from_torch(cls, module, *, axis=1, relu=False):
        """A layer with the configuration, state and mode of a ``torch.nn.BatchNorm*d``."""
        params = [p for p in (module.weight, module.running_mean) if p is not None]
        dtype = str(params[0].dtype).replace("torch.", "") if params else "float32"
        layer = cls(module.num_features, eps=module.eps, momentum=module.momentum,
                    affine=module.affine, track_running_stats=module.track_running_stats,
                    axis=axis, relu=relu, dtype=dtype)
        layer.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
        return layer.train(module.training)
