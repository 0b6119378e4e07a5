"""Thread-count resolution and the fork guard (show_config, cold, is in _config.py)."""

import numbers
import os

from cbn._dispatch import baseline as _kernels

# Below this many elements a call runs on the calling thread: an OpenMP fork/join
# costs microseconds, more than the whole work of a small tensor.
SERIAL_BELOW = 1 << 15

_state = {
    "default": None,       # set_num_threads(); None: OpenMP's omp_get_max_threads()
    "team_used": False,    # this process has run a kernel with more than one thread
    "forked_serial": False,  # forked from a process whose OpenMP team was used
}


def _after_fork_in_child():
    # GNU libgomp hangs a forked child in its next parallel region when the
    # parent had started a thread team; a team of one thread is safe.
    if _state["team_used"]:
        _state["forked_serial"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_n_threads(n_threads, name="n_threads"):
    if type(n_threads) is int and n_threads >= 1:
        return n_threads
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"{name} must be None or an integer >= 1, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"{name} must be None or an integer >= 1, got {n_threads}")
    return int(n_threads)


def set_num_threads(n):
    """Set the number of threads cbn uses when a call passes ``n_threads=None``.

    Parameters
    ----------
    n : int >= 1, or None
        None restores the default, OpenMP's ``omp_get_max_threads()`` (which
        honours ``OMP_NUM_THREADS`` and threadpoolctl).
    """
    _state["default"] = None if n is None else check_n_threads(n, "n")


def get_num_threads():
    """The number of threads a call with ``n_threads=None`` may use.

    1 in a process forked from a parent that had used cbn's thread team (the
    fork guard), and in a build without OpenMP.
    """
    if _state["forked_serial"]:
        return 1
    default = _state["default"]
    return default if default is not None else _kernels.max_threads()


def resolve(n_threads, work):
    """Threads for one call: validated ``n_threads`` (None: the default), 1 for small work."""
    if n_threads is None:
        if work < SERIAL_BELOW:
            return 1
        n = get_num_threads()
    else:
        n = check_n_threads(n_threads)
    if work < SERIAL_BELOW or _state["forked_serial"]:
        return 1
    if n > 1:
        _state["team_used"] = True
    return n
