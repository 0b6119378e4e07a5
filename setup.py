"""Build script for cbn's Cython/OpenMP extension.

OpenMP is probed by compiling and linking (never running) a tiny program, so the
probe also works for cross-compiles.  Environment switches:

CBN_OPENMP=auto  (default) use OpenMP when the compiler has it, else warn and build serially
CBN_OPENMP=1     fail when the compiler has no OpenMP (wheel builds use this)
CBN_OPENMP=0     build serially
CBN_LIBOMP_PREFIX=/path   where Apple clang finds libomp (include/ and lib/)
CBN_AVX2=0       do not build the AVX2 + FMA + F16C kernels (x86-64 builds them by default)
CBN_DEBUG=1      turn Cython's bounds/wraparound/initialization checks back on
CBN_COMPILE_PY=0 leave the Python layer (_api.py, _layout.py, _threads.py) uncompiled

Two extension modules come from one source on x86-64: cbn._kernels (portable:
SSE2) and cbn._kernels_avx2 (-mavx2 -mfma -mf16c, or /arch:AVX2), which
cbn._dispatch picks at import time when the CPU has those instructions.

The Python layer is plain Python; Cython also compiles it (the .py files stay
in the package, the compiled modules take precedence on import), which halves
the per-call overhead that dominates small tensors.
"""

import os
import shlex
import sys
import sysconfig
import tempfile
import textwrap

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("CBN_DEBUG", "0") == "1"

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += omp_get_num_threads() > 0;
        return n > 0 ? 0 : 1;
    }
    """
)


def _targets_x86_64():
    """Whether the wheel being built is for x86-64 (cross-compiles included)."""
    archflags = os.environ.get("ARCHFLAGS", "")   # macOS cross-builds set -arch
    if archflags:
        return "x86_64" in archflags and "arm64" not in archflags
    plat = sysconfig.get_platform().lower()
    return plat.endswith(("x86_64", "amd64"))


def _avx2_flags(compiler_type):
    return ["/arch:AVX2"] if compiler_type == "msvc" else ["-mavx2", "-mfma", "-mf16c"]


def _openmp_mode():
    mode = os.environ.get("CBN_OPENMP", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"CBN_OPENMP must be auto, 0 or 1, got {mode!r}")
    return mode


def _openmp_candidates(compiler_type):
    """(compile flags, link flags, include dirs, library dirs) to try, best first."""
    if compiler_type == "msvc":
        return [(["/openmp"], [], [], [])]
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag; libomp comes from a prefix
        # (conda-forge llvm-openmp in wheel builds, Homebrew locally).
        prefixes = [os.environ.get("CBN_LIBOMP_PREFIX", ""), "/opt/homebrew/opt/libomp",
                    "/usr/local/opt/libomp", os.environ.get("CONDA_PREFIX", "")]
        out = [(["-fopenmp"], ["-fopenmp"], [], [])]
        for p in filter(None, prefixes):
            lib = os.path.join(p, "lib")
            # the rpath lets delocate find libomp (conda's has an @rpath install name)
            out.append((["-Xpreprocessor", "-fopenmp"], ["-lomp", f"-Wl,-rpath,{lib}"],
                        [os.path.join(p, "include")], [lib]))
        return out
    return [(["-fopenmp"], ["-fopenmp"], [], [])]


class BuildExt(build_ext):
    """Adds the OpenMP flags the compiler accepts and records the build configuration."""

    def _probe(self, cflags, ldflags, incs, libdirs):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(OPENMP_PROBE)
            try:
                objs = self.compiler.compile([src], output_dir=tmp, include_dirs=incs,
                                             extra_postargs=cflags)
                self.compiler.link_executable(objs, os.path.join(tmp, "probe"), output_dir=tmp,
                                              library_dirs=libdirs, extra_postargs=ldflags)
            except Exception:  # CompileError, LinkError, or a missing compiler
                return False
        return True

    def _accepts(self, flag):
        """Whether the compiler takes flag without a warning (older clangs ignore some)."""
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "flag.c")
            with open(src, "w") as f:
                f.write("int cbn_flag_probe(int x) { return x + 1; }\n")
            try:
                self.compiler.compile([src], output_dir=tmp, extra_postargs=[flag, "-Werror"])
            except Exception:
                return False
        return True

    def _base_flags(self):
        if self.compiler.compiler_type == "msvc":
            return ["/O2"], []
        # Portable code only: no -march=native in anything that ships.  -fopenmp-simd
        # honours the `omp simd` loops of _kernels_c.h in serial builds too;
        # -g0 drops the debug information Python's CFLAGS ask for (5x the binary), and
        # on Linux the linker's -s the symbol tables (7-13% of each module).
        # -fno-trapping-math: no code here unmasks FP exceptions, and it lets the
        # per-channel loops (1 / sqrt with a select for var + eps == 0) vectorize.
        # -falign-loops=32: the short streaming loops run up to 1.3x slower when they
        # straddle a 32-byte boundary (measured on Zen 3).
        return (["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
                 "-Wno-unused-function"]
                + [f for f in ["-falign-loops=32"] if self._accepts(f)]
                + ([] if DEBUG else ["-g0"])), \
            (["-s"] if sys.platform.startswith("linux") and not DEBUG else [])

    def build_extensions(self):
        mode = _openmp_mode()
        ctype = self.compiler.compiler_type
        cflags, ldflags = self._base_flags()
        omp = None
        if mode != "0":
            for cand in _openmp_candidates(ctype):
                if self._probe(*cand):
                    omp = cand
                    break
            if omp is None and mode == "1":
                raise SystemExit("CBN_OPENMP=1 but the compiler cannot build an OpenMP program")
            if omp is None:
                print("WARNING: cbn: the compiler has no usable OpenMP; building the serial "
                      "kernels (set CBN_OPENMP=1 to make this an error)", file=sys.stderr)
        info_dir = os.path.join(self.build_temp, "cbn_build_info")
        os.makedirs(info_dir, exist_ok=True)
        for ext in self.extensions:
            ext.extra_link_args += ldflags
            if ext.name not in KERNELS:
                # The compiled Python layer at -O2: its calls are bound by the Python C
                # API; -O3 made its modules 14% larger (29 KB of the repaired wheel,
                # which .ci holds under 1 MB) and its smallest calls at most 3% faster.
                # Separate builds alternated process by process (8 pairs, medians, 2-core
                # AMD EPYC VM), -O2 / -O3 time of (1,16,8,8) calls with out=: inference
                # 1.00, training 1.01, backward 1.03 (1.47 us).
                ext.extra_compile_args += ["-O2" if f == "-O3" else f for f in cflags]
                continue
            ext.extra_compile_args += cflags
            if ext.name.endswith("_avx2"):
                ext.extra_compile_args += _avx2_flags(ctype)
            if omp:
                ext.extra_compile_args += omp[0]
                ext.extra_link_args += omp[1]
                ext.include_dirs += omp[2]
                ext.library_dirs += omp[3]
            ext.include_dirs.append(info_dir)
        all_flags = " ".join(shlex.quote(f) for f in
                             (sysconfig.get_config_var("CFLAGS") or "").split()
                             + cflags + (omp[0] if omp else []))
        with open(os.path.join(info_dir, "cbn_build_info.h"), "w") as f:
            f.write(f"#define CBN_BUILD_COMPILER_TYPE {_c_string(ctype)}\n")
            f.write(f"#define CBN_BUILD_FLAGS {_c_string(all_flags)}\n")
            f.write(f"#define CBN_BUILD_OPENMP_MODE {_c_string(mode)}\n")
        super().build_extensions()


def _c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


kernel_directives = {
    "language_level": 3,
    "freethreading_compatible": True,   # no module state; kernels are reentrant
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}
# The Python layer keeps Python semantics (negative indices, bounds checks).
python_directives = {"language_level": 3, "binding": True, "freethreading_compatible": True}

kernel_modules = ["_kernels"]
if _targets_x86_64() and os.environ.get("CBN_AVX2", "1") != "0":
    kernel_modules.append("_kernels_avx2")
KERNELS = [f"cbn.{name}" for name in kernel_modules]
extensions = cythonize(
    [Extension(f"cbn.{name}", [f"src/cbn/{name}.pyx"], include_dirs=["src/cbn", numpy.get_include()],
               define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
               # the C loops: an edit of the header alone rebuilds the kernels
               depends=["src/cbn/_kernels_c.h"])
     for name in kernel_modules],
    compiler_directives=kernel_directives)
if os.environ.get("CBN_COMPILE_PY", "1") != "0":
    extensions += cythonize([Extension(f"cbn.{name}", [f"src/cbn/{name}.py"])
                             for name in ("_api", "_layout", "_threads")],
                            compiler_directives=python_directives)

def _long_description():
    """PyPI's description (the wheel's METADATA): README.md up to its Performance
    section, whose benchmark records and measurements (about two thirds of the file)
    stay in README.md, shipped in the sdist; with them the METADATA took 18 KB of a
    wheel that the packaging check holds under 1 MB."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    cut = text.find("\n## Performance\n")
    if cut < 0:
        return text
    return text[:cut] + (
        "\n\n## Performance\n\nThe benchmark suite (`bench/run.py`), its latest results "
        "against PyTorch and the memory roof, and the performance targets are in README.md "
        "in the source distribution.\n")


setup(
    long_description=_long_description(),
    long_description_content_type="text/markdown",
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExt},
)
