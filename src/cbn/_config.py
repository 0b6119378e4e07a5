"""cbn.show_config: the build and runtime configuration.  Plain Python, not compiled
with the rest of the Python layer (setup.py): it is called rarely, and compiled it took
about 24 KB of the repaired wheel, which the packaging check (.ci) holds under 1 MB."""

import os
import sys

from cbn import _dispatch
from cbn._dispatch import baseline as _kernels
from cbn._threads import SERIAL_BELOW, _state, get_num_threads

_RUNTIME_NAMES = ("libgomp", "libomp", "libiomp", "vcomp")


def _loaded_libraries():
    """Paths of the shared libraries mapped into this process, or None if unknown."""
    if sys.platform.startswith("linux"):
        with open("/proc/self/maps") as f:
            return [line.split()[-1] for line in f if len(line.split()) >= 6]
    import ctypes
    if sys.platform == "darwin":
        dyld = ctypes.CDLL(None)
        dyld._dyld_get_image_name.restype = ctypes.c_char_p
        return [dyld._dyld_get_image_name(i).decode(errors="replace")
                for i in range(dyld._dyld_image_count())]
    if sys.platform == "win32":
        from ctypes import wintypes
        psapi, kernel32 = ctypes.WinDLL("Psapi.dll"), ctypes.WinDLL("kernel32")
        kernel32.GetCurrentProcess.restype = wintypes.HANDLE
        process = kernel32.GetCurrentProcess()
        mods = (wintypes.HMODULE * 4096)()
        needed = wintypes.DWORD()
        if not psapi.EnumProcessModules(process, mods, ctypes.sizeof(mods), ctypes.byref(needed)):
            return None
        out, buf = [], ctypes.create_unicode_buffer(1024)
        for h in mods[:needed.value // ctypes.sizeof(wintypes.HMODULE)]:
            if kernel32.GetModuleFileNameW(wintypes.HMODULE(h), buf, 1024):
                out.append(buf.value)
        return out
    return None


def _loaded_openmp_runtimes():
    """File names of the OpenMP runtimes loaded in this process (None where unknown)."""
    try:
        libs = _loaded_libraries()
    except Exception:  # an unusual platform: the answer is only informative
        return None
    if libs is None:
        return None
    found = []
    for path in libs:
        base = os.path.basename(path.replace("\\", "/"))
        if base.lower().startswith(_RUNTIME_NAMES) and base not in found:
            found.append(base)
    return found


def _expected_runtime(info):
    if not info["openmp"]:
        return None
    if info["compiler_type"] == "msvc":
        return "vcomp"
    return "libomp" if info["compiler"].startswith("clang") else "libgomp"


def show_config(print_out=True):
    """Print and return cbn's build and runtime configuration.

    Returns
    -------
    dict
        version, OpenMP on or off (and its version date), the OpenMP runtime the
        build links (and the runtimes loaded in this process where the platform
        tells), threads, compiler and flags, the SIMD level the build targets, and
        from how many bytes touched an output pass writes with streaming stores.
    """
    from cbn import __version__
    import numpy

    info = _dispatch.kernels.build_info()
    cfg = {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "openmp": info["openmp"],
        "openmp_version": info["openmp_date"] or None,
        "openmp_runtime": _expected_runtime(info),
        "openmp_runtimes_loaded": _loaded_openmp_runtimes(),
        "threads": get_num_threads(),
        "omp_max_threads": _kernels.max_threads(),
        "cpu_count": os.cpu_count(),
        "forked_serial": _state["forked_serial"],
        "compiler": info["compiler"],
        "flags": info["flags"],
        "simd": info["simd"],
        "simd_builds": sorted(_dispatch.VARIANTS),
        "float16": info["float16"],
        "serial_below_elements": SERIAL_BELOW,
        "last_level_cache_bytes": _dispatch.kernels.llc_bytes() or None,
        "streaming_stores_from_bytes": _dispatch.kernels.stream_from(),
        "prefetch_runs_from_bytes": _dispatch.kernels.prefetch_runs_from(),
        "planar_sums_prefetch_stream": _dispatch.kernels.prefetch_stream(),
        "tiled_stores_to_bytes": _dispatch.kernels.tiled_stores_to(),
        "narrow_rows_fold_to_tiles": _dispatch.kernels.fold_to_tiles(),
        "tiled_rows_per_block_max": _dispatch.kernels.tile_block_rows(),
        "short_runs_below_bytes": _dispatch.kernels.short_runs_below(),
        "fused_training_from_values": _dispatch.kernels.fused_training_from(),
        "two_phase_below_bytes": _dispatch.kernels.two_phase_below(),
        "tiled_stats_from_memory": _dispatch.kernels.tiled_from_memory(),
        "eight_row_sums": _dispatch.kernels.eight_row_sums(),
        "eight_row_sums_below_width": _dispatch.kernels.eight_row_width(),
        "eight_row_sums_f16": _dispatch.kernels.eight_row_sums_f16(),
        "eight_row_sums_avx512": _dispatch.kernels.wide_sums(),
        "register_sums_avx512": _dispatch.kernels.register_sums(),
        "float16_passes_avx512": _dispatch.kernels.wide_halves(),
        "float32_rows_avx512": _dispatch.kernels.wide_rows(),
        "sixteen_channel_sums": _dispatch.kernels.sixteen_channel_tiles(),
        "planar_runs_sums": _dispatch.kernels.runs_sums(),
        "second_pass_reversed": _dispatch.kernels.second_pass_reversed(),
        "reversed_rows_to_bytes": _dispatch.kernels.reversed_rows_to(),
        "split_few_channels": _dispatch.kernels.split_few_channels(),
        "wide_rows_by_columns": _dispatch.kernels.by_columns(),
        "inference_params_per_block": _dispatch.kernels.params_per_block(),
        "tables_match_output": _dispatch.kernels.tables_match_output(),
        "tables_shift_bytes": _dispatch.kernels.table_shift(),
        "planar_outputs_prefetch": _dispatch.kernels.prefetch_outputs(),
    }
    if print_out:
        width = max(map(len, cfg))
        for k, v in cfg.items():
            print(f"{k:<{width}} : {v}")
    return cfg
