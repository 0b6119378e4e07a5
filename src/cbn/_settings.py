"""The value check of the kernels' size settings (the setters of cbn._kernels, for tests
and measurements), in Python: compiled into the kernels, it would be carried twice
(both builds), and the wheel is kept small."""

import operator
import sys


def count(name, n):
    """n as a count: an int (or NumPy integer, not a bool) in [0, sys.maxsize], else
    TypeError / ValueError naming the setter's parameter `name`."""
    if not isinstance(n, bool):
        try:
            n = operator.index(n)
        except TypeError:
            pass
        else:
            if n < 0 or n > sys.maxsize:
                raise ValueError(f"{name} must be >= 0 and at most 2**63 - 1, or None, "
                                 f"got {n}")
            return n
    raise TypeError(f"{name} must be an int >= 0 or None, got {n!r}")
