"""cbn's benchmark suite: every op x layout x shape x threads against the memory roof,
plain NumPy, PyTorch and ONNX Runtime, timed in one run.

    python bench/run.py            # the full suite (a few minutes)
    python bench/run.py --quick    # about a minute: fewer shapes and repeats

Per cell, each contender is timed interleaved with the others, round by round, and
the median per call is kept:

- roof: a parallel copy of x's bytes (bench/_roof.pyx, built here with the
  project's toolchain), scaled to the op's unfused traffic: inference 2X,
  training 3X, backward 5X (X = x's size; the copy moves 2X);
- cbn with out= and cbn allocating its output;
- the best plain-NumPy formulation;
- the floor's float64 sums alone (bench/_roof.pyx), read in memory order ("acc")
  and, for planar training and backward, channel by channel as a fused kernel that
  keeps a channel's slab in cache must read them ("acc_ch"), and the stores of an
  output pass alone, x's bytes written with plain ("write") and with streaming
  ("write_nt") vector stores;
- PyTorch CPU (its allocating functional API; native_batch_norm_backward) and
  ONNX Runtime (inference, NCHW), when installed.

The full and quick runs add float16 against float32 per byte (and, for inference, a
float16 pass that only converts each value in and out, against float32 inference per
byte: where that floor is above 1, so is any float16 output pass; beyond the caches also
with every array evicted before each call; and what those compare with: a plain read of
the float16 bytes against the float32 ones, and cbn's statistics against that read),
the ResNet-50 sums,
arrays that start 16 bytes into a cache line against 64-byte-aligned ones (also alone:
--alignment), and the build cbn picks at run time against the portable one and
against the same source compiled here with -march=native (bench/build/_kernels_native,
never shipped: how much a CPU-specific build would add).

Results: a table on stdout, a JSON record in bench/results/ (machine, versions,
flags, every number), a PNG plot when matplotlib is installed, and issue 3's targets
checked against the run (targets(): met or not, next to what the bench measured that
bounds each on the machine), printed as TARGETS, kept in the record, and printed first
by --report.
"""

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

import cbn
from cbn import _dispatch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EPS = 1e-5

SHAPES = [(32, 128, 56, 56), (8, 64, 112, 112), (1, 64, 56, 56), (1, 256, 14, 14),
          (1, 16, 8, 8), (256, 1024), (4, 32, 16, 28, 28)]
QUICK_SHAPES = [(8, 64, 56, 56), (1, 256, 14, 14), (1, 16, 8, 8), (256, 1024), (2, 32, 8, 28, 28)]
OPS = ("inference", "training", "backward")
ROOF_FACTOR = {"inference": 1.0, "training": 1.5, "backward": 2.5}   # op bytes / copy bytes
# The accumulation floor of an op: its float64 sums ("acc": cbn's planar sum loop,
# free-standing, over x in memory order on all threads; for channels-last cells a flat
# sum, quicker than the per-channel forms those need), then its output pass at the
# copy's speed: training writes y from x (one copy), backward writes dx from x and dy
# (1.5 copies).  The sum of the two: a model of a kernel that does one after the other
# (floor_seconds), not a bound.
OUTPUT_PASS = {"training": 1.0, "backward": 1.5}
# The fused floor's bytes in copies (DESIGN section 3): inference 2X, training 2X
# (x read once while a channel's slab stays in cache), backward 3X.
FUSED_FACTOR = {"inference": 1.0, "training": 1.0, "backward": 1.5}
# The channel-order floor of planar training and backward: a fused kernel keeps one
# channel's slab in cache between its sums and its output, so it reads the sums channel
# by channel ("acc_ch": runs of H*W values, C*H*W apart) and its output pass then costs
# at least the output's stores: the quicker of "write" and "write_nt", measured with the
# cell (write_pass).  Records from before that measurement charge them as half a copy
# (WRITE_PASS).
PLANAR = ("NCHW", "NCDHW")
ROOF_TARGET = 0.85      # issue 3: the roof fraction asked of every cell of 1 MB or more
WRITE_PASS = 0.5
WARM_CALLS = 2          # untimed calls before each timing sample (time_interleaved)


def write_seconds(t):
    """The channel-order floor's output stores: measured, or half a copy in old records."""
    if "write" in t:
        return min(t["write"], t["write_nt"])
    return WRITE_PASS * t["roof"]


def floor_seconds(cell):
    """The time of a float64-accumulating kernel that sums first and then writes its
    output at the copy's speed (or of the fused bytes' copy, if longer).  A model, not
    a bound: kernels that overlap one channel's sums with another's stores beat it
    (cbn does in in-cache planar cells); the bound is sums_bound's."""
    t, op = cell["seconds"], cell["op"]
    return max(FUSED_FACTOR[op] * t["roof"], t.get("acc", 0.0) + OUTPUT_PASS.get(op, 1.0) * t["roof"])


def sums_bound(cell):
    """The best roof fraction the float64 sums alone allow (training and backward; None
    for inference, which has none): the roof's time over the sums' ("acc"), as if the
    rest of the op were free.  No kernel that accumulates in float64 goes faster than
    its sums, so a roof-fraction target above this is out of reach on the machine.
    floor_seconds, which adds an output pass to the sums, is a model, not a bound: a
    kernel that overlaps one channel's sums with another's stores beats it.  (Where a
    call is a few microseconds, (1,16,8,8), the free-standing sums pay a fork and join
    that cbn's serial path does not, and cbn beats this too.)"""
    t, op = cell["seconds"], cell["op"]
    if op == "inference" or not t.get("acc"):
        return None
    return ROOF_FACTOR[op] * t["roof"] / t["acc"]


def resnet50_bn_shapes(n=1):
    """Input shapes of the 53 BatchNorm layers of torchvision's ResNet-50 (v1.5) at 224x224."""
    shapes = [(n, 64, 112, 112)]
    hw = 56
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            out_hw = hw // s
            shapes += [(n, width, hw, hw), (n, width, out_hw, out_hw), (n, 4 * width, out_hw, out_hw)]
            if b == 0:
                shapes.append((n, 4 * width, out_hw, out_hw))   # downsample branch
            hw = out_hw
    return shapes


# ------------------------------------------------------------------ contenders

def _build(name, source, stamp_key, flags, include_dirs, directives=None):
    """Compile the Cython module `name` from `source` into bench/build (-O3 and the
    project's other flags, plus `flags`, OpenMP where the compiler has it: Apple clang
    without libomp gets a serial build) and import it, unless built already with the
    same stamp_key."""
    build = os.path.join(HERE, "build")
    if build not in sys.path:
        sys.path.insert(0, build)
    stamp = os.path.join(build, f"{name}.stamp")
    import importlib
    try:
        with open(stamp) as f:
            if f.read() == stamp_key:
                return importlib.import_module(name)
    except (ImportError, OSError):
        pass
    from Cython.Build import cythonize
    from setuptools import Extension
    from setuptools.dist import Distribution
    win = sys.platform == "win32"
    # _kernels_c.h wants the build facts setup.py writes; the bench's builds report these
    info = os.path.join(build, "include")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "cbn_build_info.h"), "w") as f:
        f.write("".join(f'#define {k} "bench"\n' for k in (
            "CBN_BUILD_COMPILER_TYPE", "CBN_BUILD_FLAGS", "CBN_BUILD_OPENMP_MODE")))
    for omp in ((["/openmp"] if win else ["-fopenmp"]), []):
        ext = Extension(name, [source], include_dirs=[np.get_include(), info] + include_dirs,
                        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                        extra_compile_args=(["/O2"] if win else [
                            "-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
                            "-Wno-unused-function"]) + flags + omp,
                        extra_link_args=[] if win else omp)
        dist = Distribution({"ext_modules": cythonize(
            [ext], quiet=True, build_dir=os.path.join(build, "c"),
            include_path=include_dirs, compiler_directives=directives or {})})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = build
        cmd.build_temp = os.path.join(build, "tmp")
        cmd.force = True
        cmd.ensure_finalized()
        try:
            cmd.run()
            break
        except Exception as e:  # CompileError / LinkError: no OpenMP here
            if not omp:
                raise
            print(f"note: {name} is built without OpenMP ({type(e).__name__})", file=sys.stderr)
    importlib.invalidate_caches()
    module = importlib.import_module(name)
    with open(stamp, "w") as f:
        f.write(stamp_key)
    return module


def build_roof():
    """bench/_roof.pyx (the roof's copy, the floor's sums) with the instruction set of
    the kernels this process runs."""
    simd = _dispatch.active()
    header = os.path.join(ROOT, "src", "cbn", "_kernels_c.h")     # the floor's loops
    isa = ["-mavx2", "-mfma", "-mf16c"] if simd == "avx2" and sys.platform != "win32" else (
        ["/arch:AVX2"] if simd == "avx2" else [])
    key = (f"{os.path.getmtime(os.path.join(HERE, '_roof.pyx'))} "
           f"{os.path.getmtime(header)} {simd} {' '.join(isa)}")
    roof = _build("_roof", os.path.join(HERE, "_roof.pyx"), key, isa,
                  [os.path.dirname(header)])
    roof.use_fma_adds(_dispatch.kernels.fma_adds())     # the sums cbn runs on this CPU
    roof.use_stream(_dispatch.kernels.prefetch_stream())  # and how they prefetch
    wide = getattr(_dispatch.kernels, "wide_halves", None)  # float16 conversions' width
    roof.use_wide(bool(wide and wide()))
    return roof


def build_native():
    """cbn's kernels compiled for this very CPU (-march=native: AVX-512 where it has it),
    which cbn does not ship, as bench/build/_kernels_native; None where the compiler
    has no -march=native (MSVC) or the build fails."""
    if sys.platform == "win32":
        return None
    src = os.path.join(ROOT, "src", "cbn")
    key = " ".join(str(os.path.getmtime(os.path.join(src, f)))
                   for f in ("_kernels.pyx", "_kernels_c.h", "_openmp.pxd"))
    os.makedirs(os.path.join(HERE, "build"), exist_ok=True)
    stub = os.path.join(HERE, "build", "_kernels_native.pyx")
    with open(stub, "w") as f:
        f.write('include "_kernels.pyx"\n')
    # setup.py's kernel directives (release build)
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False,
                  "initializedcheck": False, "cdivision": True}
    try:
        return _build("_kernels_native", stub, key, ["-march=native"],
                      [src, os.path.join(ROOT, "src")], directives)
    except Exception as e:  # noqa: BLE001  (an extra: the suite goes on without it)
        print(f"note: no native build of the kernels ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def layouts_for(shape):
    if len(shape) == 2:
        return ["NC"]
    if len(shape) == 5:
        return ["NCDHW", "NDHWC"]
    return ["NCHW", "NHWC"]


def make_case(shape, layout, rng, dtype=np.float32):
    """(x, dy, axis, params, x_nchw, dy_nchw) for a logical NC... shape in a layout."""
    C = shape[1]
    x_nchw = (rng.standard_normal(shape, dtype=np.float32) * 2 + 1).astype(dtype)
    dy_nchw = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    if layout in ("NHWC", "NDHWC"):
        x = np.ascontiguousarray(np.moveaxis(x_nchw, 1, -1))
        dy = np.ascontiguousarray(np.moveaxis(dy_nchw, 1, -1))
        axis = -1
    else:
        x, dy, axis = x_nchw, dy_nchw, 1
    p = dict(weight=rng.uniform(0.5, 2, C).astype(np.float32),
             bias=rng.uniform(-1, 1, C).astype(np.float32),
             running_mean=rng.standard_normal(C).astype(np.float32),
             running_var=rng.uniform(0.5, 2, C).astype(np.float32))
    return x, dy, axis, p, x_nchw, dy_nchw


def cbn_ops(x, dy, axis, p, nt, out):
    _, mean, invstd = cbn.batch_norm(x, weight=p["weight"], bias=p["bias"], training=True,
                                     axis=axis, return_stats=True)
    o = {} if out is None else {"out": out}
    w, b, rm, rv = p["weight"], p["bias"], p["running_mean"], p["running_var"]
    return {
        "inference": lambda: cbn.batch_norm(x, rm, rv, w, b, axis=axis, n_threads=nt, **o),
        "training": lambda: cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis,
                                           n_threads=nt, **o),
        "backward": lambda: cbn.batch_norm_backward(dy, x, mean, invstd, w, axis=axis,
                                                    n_threads=nt, **o),
    }


def numpy_ops(x, dy, axis, p):
    """The best plain-NumPy way: per-channel vectors, broadcasting, in-place where possible."""
    ax = axis % x.ndim
    axes = tuple(k for k in range(x.ndim) if k != ax)
    bshape = [1] * x.ndim
    bshape[ax] = x.shape[ax]
    w, b, rm, rv = (p[k].reshape(bshape) for k in ("weight", "bias", "running_mean", "running_var"))
    scale = w / np.sqrt(rv + EPS)
    shift = b - rm * scale
    n = x.size // x.shape[ax]
    mean = x.mean(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + EPS)

    def inference():
        y = np.multiply(x, scale)
        return np.add(y, shift, out=y)

    def training():
        m = x.mean(axis=axes, keepdims=True)
        v = x.var(axis=axes, keepdims=True)
        y = np.subtract(x, m)
        y *= w / np.sqrt(v + EPS)
        y += b
        return y

    def backward():
        xhat = (x - mean) * invstd
        db = dy.sum(axis=axes, keepdims=True)
        dw = (dy * xhat).sum(axis=axes, keepdims=True)
        dx = dy - db / n
        xhat *= dw / n
        dx -= xhat
        dx *= w * invstd
        return dx, dw, db

    return {"inference": inference, "training": training, "backward": backward}


def torch_ops(torch, x_nchw, dy_nchw, layout, p):
    F = torch.nn.functional
    fmt = torch.channels_last if layout == "NHWC" else (
        torch.channels_last_3d if layout == "NDHWC" else torch.contiguous_format)
    tx = torch.from_numpy(x_nchw).contiguous(memory_format=fmt)
    tdy = torch.from_numpy(dy_nchw).contiguous(memory_format=fmt)
    tw, tb, trm, trv = (torch.from_numpy(p[k]) for k in ("weight", "bias", "running_mean",
                                                          "running_var"))
    _, smean, sinv = torch.native_batch_norm(tx, tw, tb, None, None, True, 0.1, EPS)

    def inference():
        with torch.no_grad():
            return F.batch_norm(tx, trm, trv, tw, tb, training=False, eps=EPS)

    def training():
        with torch.no_grad():
            return F.batch_norm(tx, None, None, tw, tb, training=True, eps=EPS)

    def backward():
        return torch.ops.aten.native_batch_norm_backward(tdy, tx, tw, None, None, smean, sinv,
                                                         True, EPS, [True, True, True])

    return {"inference": inference, "training": training, "backward": backward}


def ort_inference(ort, x_nchw, p, nt):
    """An ONNX Runtime session holding one inference-mode BatchNormalization node."""
    from onnx import TensorProto, helper, numpy_helper
    C = x_nchw.shape[1]
    inits = [numpy_helper.from_array(p[k], name=k) for k in ("weight", "bias", "running_mean",
                                                              "running_var")]
    node = helper.make_node("BatchNormalization", ["x", "weight", "bias", "running_mean",
                                                   "running_var"], ["y"], epsilon=EPS)
    graph = helper.make_graph([node], "bn", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(x_nchw.shape))], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, list(x_nchw.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = nt
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    assert C == p["weight"].shape[0]
    return lambda: sess.run(None, {"x": x_nchw})


# ------------------------------------------------------------------ timing

def calls_per_sample(fn, budget):
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    return max(1, int(budget / max(one, 1e-7)))


def time_interleaved(fns, rounds, budget):
    """Median seconds per call of each function, sampled round by round.

    Each round takes the contenders in a new order (a shuffle with a fixed seed), so
    that none follows the same one in every round: a contender's first calls after
    another's pay for the other's traffic (a copy's dirty lines written back from the
    caches: in a 25.7 MB backward cell whichever cbn call came right after the roof took
    1.06-1.18x the other's time), which a fixed order charges to the same contender in
    every round. Each sample starts with WARM_CALLS calls that are not timed (a sample is
    as many calls as fit the budget, one or two for the larger cells), so that it times
    the state the contender's own calls leave: after one untimed call, the first timed
    call still paid for the contender before it (51 MB channels-last backward alternated
    with the roof, 2 threads, medians of 9 rounds in three runs: cbn's first timed call
    6158-6687 us, its second and third 5350-6049 and 5251-5951, alone 5250-5367; the
    roof's 2246-2416 us against 1804-1929); after two, none did (cbn 5248-5338, roof
    1804-1936).
    """
    reps = [calls_per_sample(f, budget) for f in fns]
    samples = [[] for _ in fns]
    shuffle = np.random.default_rng(0)
    for _ in range(rounds):
        for j in shuffle.permutation(len(fns)):
            f, r = fns[j], reps[j]
            for _ in range(WARM_CALLS):
                f()
            t0 = time.perf_counter()
            for _ in range(r):
                f()
            samples[j].append((time.perf_counter() - t0) / r)
    return [float(np.median(s)) for s in samples]


def peak_alloc_bytes(fn):
    """Peak bytes NumPy/Python allocate during one call (tracemalloc sees NumPy's buffers)."""
    fn()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


# ------------------------------------------------------------------ the suite

def derive(cell):
    """The cell's ratios from its times (in place; returns it)."""
    t, op = cell["seconds"], cell["op"]
    cell["roof_fraction"] = ROOF_FACTOR[op] * t["roof"] / t["cbn_out"]
    cell["floor_fraction"] = (t.get("acc", 0.0) + OUTPUT_PASS.get(op, 1.0) * t["roof"]) / t["cbn_out"]
    bound = sums_bound(cell)
    if bound is not None:
        cell["sums_bound"] = bound
    cell["vs_numpy"] = t["numpy"] / t["cbn"]
    if "acc_ch" in t:
        channel_floor = t["acc_ch"] + write_seconds(t)
        cell["channel_floor_fraction"] = channel_floor / t["cbn_out"]
        cell["channel_bound"] = ROOF_FACTOR[op] * t["roof"] / channel_floor
    for k in ("torch", "onnxruntime"):
        if k in t:
            cell["vs_" + k] = t[k] / t["cbn"]
    return cell


def merge_runs(runs):
    """One record from several runs of the same cells: each time the median over runs."""
    merged = []
    for same in zip(*runs):
        cell = {k: v for k, v in same[0].items() if k != "seconds"}
        cell["seconds"] = {k: float(np.median([c["seconds"][k] for c in same]))
                           for k in same[0]["seconds"]}
        cell["runs"] = len(same)
        merged.append(derive(cell))
    return merged


def merge_float16(runs):
    """One list of float16 rows (or of their references) from several runs: each ratio
    the median over the runs (spread over the whole run as the cells' repeats are: in
    one pass at the end, the 32x128x56x56 channels-last training came out at 1.05-1.10
    per byte in two full runs and 0.96-0.99 in the same script on its own)."""
    merged = []
    for same in zip(*runs):
        row = dict(same[0])
        for k in row:
            if isinstance(row[k], float):
                row[k] = float(np.median([r[k] for r in same]))
        row["runs"] = len(same)
        merged.append(row)
    return merged


def write_pass(roof, halves, nt, stream):
    """A call that stores x's bytes (roof.write) into halves[0] and halves[1] in turn
    (write_halves)."""
    turn = itertools.cycle(halves)
    return lambda: roof.write(next(turn), nt, stream)


def run_cells(args, roof, torch, ort, all_threads):
    rng = np.random.default_rng(0)
    shapes = [(2, 3, 4, 4)] if args.smoke else (
        args.shape or (QUICK_SHAPES if args.quick else SHAPES))
    cells = []
    for shape in shapes:
        for layout in layouts_for(shape):
            x, dy, axis, p, x_nchw, dy_nchw = make_case(shape, layout, rng)
            out = np.empty_like(x)
            copy_dst = np.empty_like(x)
            # the stores' floor writes a buffer twice x's size, half by half: the op's
            # working set is x and its output, and a buffer of x's size alone would stay
            # in a cache that the two do not fit
            write_halves = np.empty((2, x.nbytes), np.uint8) if layout in PLANAR else None
            for nt in sorted({1, all_threads}):
                if torch is not None:
                    torch.set_num_threads(nt)
                contenders = {
                    "cbn_out": cbn_ops(x, dy, axis, p, nt, out),
                    "cbn": cbn_ops(x, dy, axis, p, nt, None),
                    "numpy": numpy_ops(x, dy, axis, p),
                }
                if torch is not None:
                    contenders["torch"] = torch_ops(torch, x_nchw, dy_nchw, layout, p)
                ort_fn = (ort_inference(ort, x_nchw, p, nt)
                          if ort is not None and layout in ("NCHW", "NC", "NCDHW") else None)
                for op in OPS:
                    names = ["roof"] + list(contenders)
                    fns = [lambda: roof.copy(x, copy_dst, nt)] + [c[op] for c in contenders.values()]
                    g = dy if op == "backward" else None
                    if op in OUTPUT_PASS:
                        names.append("acc")
                        fns.append(lambda g=g: roof.sums(x, g, nt))
                    if op in OUTPUT_PASS and layout in PLANAR:
                        names += ["acc_ch", "write", "write_nt"]
                        fns += [lambda g=g, inner=math.prod(shape[2:]): roof.sums_by_channel(
                                    x, g, shape[0], shape[1], inner, nt),
                                write_pass(roof, write_halves, nt, False),
                                write_pass(roof, write_halves, nt, True)]
                    if op == "inference" and ort_fn is not None:
                        names.append("onnxruntime")
                        fns.append(ort_fn)
                    secs = time_interleaved(fns, args.rounds, args.budget)
                    t = dict(zip(names, secs))
                    cell = derive({"shape": list(shape), "layout": layout, "op": op,
                                   "threads": nt, "dtype": "float32", "x_bytes": x.nbytes,
                                   "seconds": t})
                    if nt == all_threads:
                        peak = peak_alloc_bytes(contenders["cbn_out"][op])
                        cell["peak_alloc_bytes"] = peak
                    cells.append(cell)
                    print_cell(cell, flush=True)
    return cells


def run_resnet50(args, roof, torch, ort, nt):
    """ResNet-50 batch-1 BN inference summed over its 53 layers, per contender, two ways.

    cold: the layers run in sequence on their own inputs (44 MB in all, more than the
    last-level cache), so every input comes from memory; "roof" copies each input into
    one buffer that stays in cache (the least traffic: each input read once), and
    "read" only reads each input (the bench's read loop, nothing written): no batch
    norm, which reads every input once at least, can take less time than that.
    hot: each layer timed on its own, repeatedly, so that its input is in cache (as
    when BN runs right after the convolution that wrote it); medians summed.
    """
    rng = np.random.default_rng(1)
    per_layer = []      # per layer: {contender: callable}
    shapes = resnet50_bn_shapes(1)
    scratch = np.empty(max(math.prod(s) for s in shapes), np.float32)
    for shape in shapes:
        x, dy, axis, p, x_nchw, _ = make_case(shape, "NCHW", rng)
        out, dst = np.empty_like(x), scratch[:x.size].reshape(x.shape)
        rm, rv, w, b = p["running_mean"], p["running_var"], p["weight"], p["bias"]
        fns = {
            "roof": lambda x=x, dst=dst: roof.copy(x, dst, nt),
            "read": lambda x=x: roof.read(x, nt),
            "cbn_out": lambda x=x, out=out, rm=rm, rv=rv, w=w, b=b:
                cbn.batch_norm(x, rm, rv, w, b, out=out),
            "cbn": lambda x=x, rm=rm, rv=rv, w=w, b=b: cbn.batch_norm(x, rm, rv, w, b),
        }
        if torch is not None:
            t = [torch.from_numpy(a) for a in (x, rm, rv, w, b)]

            def run_torch(t=t, F=torch.nn.functional):
                with torch.no_grad():
                    return F.batch_norm(t[0], t[1], t[2], t[3], t[4], training=False, eps=EPS)
            fns["torch"] = run_torch
        if ort is not None:
            fns["onnxruntime"] = ort_inference(ort, x, p, nt)
        per_layer.append(fns)
    if torch is not None:
        torch.set_num_threads(nt)
    names = list(per_layer[0])

    def sequence(name):
        fs = [layer[name] for layer in per_layer]

        def run():
            for f in fs:
                f()
        return run
    cold = dict(zip(names, time_interleaved([sequence(k) for k in names], args.rounds,
                                            args.budget)))
    hot = dict.fromkeys(names, 0.0)
    for layer in per_layer:
        for k, v in zip(names, time_interleaved([layer[k] for k in names], args.rounds,
                                                args.budget / 4)):
            hot[k] += v
    return resnet_ratios({"layers": len(per_layer), "threads": nt, "seconds": cold,
                          "hot_seconds": hot})


def read_note(res, tag):
    """The ResNet line's words on the plain read of the inputs, where measured."""
    if tag + "torch_over_read" not in res:
        return ""
    return (f" and {res[tag + 'torch_over_read']:.2f}x a plain read of its inputs "
            f"(cbn {res[tag + 'cbn_over_read']:.2f}x)")


def resnet_ratios(res):
    for tag in ("", "hot_"):
        secs = res[tag + "seconds"]
        if "torch" in secs:
            res[tag + "vs_torch"] = secs["torch"] / secs["cbn"]
            res[tag + "torch_over_roof"] = secs["torch"] / secs["roof"]
            if "read" in secs:
                res[tag + "torch_over_read"] = secs["torch"] / secs["read"]
        if "read" in secs:
            res[tag + "cbn_over_read"] = min(secs["cbn_out"], secs["cbn"]) / secs["read"]
        if "onnxruntime" in secs:
            res[tag + "vs_onnxruntime"] = secs["onnxruntime"] / secs["cbn"]
        res[tag + "roof_fraction"] = secs["roof"] / min(secs["cbn_out"], secs["cbn"])
    return res


EVICT_BYTES = 320 << 20  # read before each call timed cold (time_cold): four times the
                         # ~80 MB of L3 that repeated passes keep on the Intel Xeon VM


def time_cold(fns, rounds, evict):
    """Median seconds of one call of each function with its arrays evicted from the
    caches first (evict(): a read of EVICT_BYTES), round by round in shuffled orders:
    the state of a layer whose input was written long before, where time_interleaved
    times the arrays as the contender's own calls leave them (on this VM's large L3,
    largely in cache up to ~80 MB)."""
    samples = [[] for _ in fns]
    shuffle = np.random.default_rng(1)
    for _ in range(rounds):
        for j in shuffle.permutation(len(fns)):
            evict()
            t0 = time.perf_counter()
            fns[j]()
            samples[j].append(time.perf_counter() - t0)
    return [float(np.median(s)) for s in samples]


def run_float16(args, nt, roof):
    """Time per byte of x, float16 against float32, cbn with out= (all cores); for
    inference also the float16 conversion floor (roof.f16_convert: every value converted
    in and out, no arithmetic) per byte against float32 inference per byte, where the
    roof has F16C: above 1, no float16 output pass can match float32 per byte there.
    The shapes beyond the caches also timed cold (time_cold: every array from memory).

    Returns the rows and their references (f16_references), one per shape and layout."""
    rng = np.random.default_rng(2)
    rows, refs = [], []
    shapes = [(8, 64, 56, 56)] if args.quick else [(32, 128, 56, 56), (1, 64, 56, 56)]
    big = np.ones(EVICT_BYTES, np.uint8)

    def evict():
        roof.read(big, nt)

    for shape in shapes:
        for layout in ("NCHW", "NHWC"):
            ops, nbytes, xs = {}, {}, {}
            for dt in (np.float32, np.float16):
                x, dy, axis, p, _, _ = make_case(shape, layout, rng, dt)
                ops[dt] = cbn_ops(x, dy, axis, p, nt, np.empty_like(x))
                ops[dt]["statistics"] = (lambda x=x, axis=axis:
                                         cbn.batch_stats(x, axis=axis, n_threads=nt))
                nbytes[dt] = x.nbytes
                xs[dt] = x
            dst = np.empty_like(x)      # x: the float16 case (the loop's last)
            floor = roof.f16_convert(x, dst, nt) and (lambda: roof.f16_convert(x, dst, nt))
            for op in OPS:     # both dtypes timed interleaved, round by round
                fns = [ops[np.float32][op], ops[np.float16][op]]
                if floor and op == "inference":
                    fns.append(floor)
                t = time_interleaved(fns, args.rounds, args.budget)
                per32 = t[0] / nbytes[np.float32]
                row = {"shape": list(shape), "layout": layout, "op": op,
                       "f16_over_f32_per_byte": (t[1] / nbytes[np.float16]) / per32}
                if len(t) > 2:
                    row["f16_conversion_floor_over_f32_per_byte"] = (
                        t[2] / nbytes[np.float16]) / per32
                if shape[0] > 1:     # beyond the caches: cold too
                    c32, c16 = time_cold(fns[:2], args.rounds, evict)
                    row["f16_over_f32_cold_per_byte"] = ((c16 / nbytes[np.float16])
                                                         / (c32 / nbytes[np.float32]))
                rows.append(row)
            refs.append(f16_references(args, nt, roof, shape, layout, xs, ops, evict))
    return rows, refs


def f16_references(args, nt, roof, shape, layout, xs, ops, evict):
    """What the float16 ratios of a shape compare with: a plain read of x (roof.read) of
    the float16 bytes against the float32 bytes, per byte (as the samples leave the
    arrays, and for shapes beyond the caches cold, where a call's fixed costs weigh on
    the smaller array: cold reads of 25.7 MB and of 51.4 MB differed by 1.05-1.11 per
    byte on the Intel Xeon VM); and cbn's statistics (batch_stats, the sums of training)
    against that read of the same x, in each dtype (above 1: the sums run slower than
    the memory they read, as the float16 ones do where their micro-ops bound them)."""
    reads = [lambda a=xs[dt]: roof.read(a, nt) for dt in (np.float32, np.float16)]
    t = time_interleaved(reads + [ops[np.float32]["statistics"], ops[np.float16]["statistics"]],
                         args.rounds, args.budget)
    n32, n16 = xs[np.float32].nbytes, xs[np.float16].nbytes
    ref = {"shape": list(shape), "layout": layout,
           "read_f16_over_f32_per_byte": (t[1] / n16) / (t[0] / n32),
           "f32_stats_over_read": t[2] / t[0], "f16_stats_over_read": t[3] / t[1]}
    if shape[0] > 1:
        c32, c16 = time_cold(reads, args.rounds, evict)
        ref["read_f16_over_f32_cold_per_byte"] = (c16 / n16) / (c32 / n32)
    return ref


def _placed(a, off):
    """A copy of a that starts off bytes into a 64-byte line."""
    buf = np.empty(a.nbytes + 128, np.uint8)
    k = (off - buf.ctypes.data) % 64
    b = buf[k:k + a.nbytes].view(a.dtype).reshape(a.shape)
    b[...] = a
    return b


ALIGN_CASES = [((1, 64, 56, 56), "NCHW"), ((1, 64, 56, 56), "NHWC"), ((1, 256, 14, 14), "NCHW"),
               ((1, 256, 14, 14), "NHWC"), ((256, 1024), "NC")]


def run_alignment(args, nt):
    """cbn with out= on x, dy and out that start 16 bytes into a 64-byte line (where
    NumPy's allocations often start: malloc aligns to 16) against the same calls on
    64-byte-aligned copies, timed interleaved (all cores): time ratio, on cells that
    fit in cache, where 32-byte stores that split two lines cost most."""
    rng = np.random.default_rng(4)
    rows = []
    for shape, layout in ALIGN_CASES[1:2] if args.quick else ALIGN_CASES:
        x, dy, axis, p, _, _ = make_case(shape, layout, rng)
        ops = [cbn_ops(_placed(x, off), _placed(dy, off), axis, p, nt, _placed(x, off))
               for off in (16, 0)]
        if not rows:    # the first samples of a process run slow: warm up, unrecorded
            time_interleaved([o[op] for o in ops for op in OPS], args.rounds, args.budget)
        for op in OPS:
            t = time_interleaved([o[op] for o in ops], args.rounds, args.budget)
            rows.append({"shape": list(shape), "layout": layout, "op": op,
                         "misaligned_over_aligned": t[0] / t[1]})
    return rows


def on_kernels(variant, fn):
    """fn run on the given build of the kernels (so that both builds time interleaved)."""
    def run():
        old = _dispatch.use(variant)
        try:
            return fn()
        finally:
            _dispatch.use(old)
    return run


def run_simd(args, nt, native):
    """The kernels this process picked (AVX2 on x86-64) against the portable baseline
    build, and against the same source compiled for this very CPU (-march=native,
    built here, not shipped) where that build exists."""
    if len(_dispatch.VARIANTS) < 2:
        return []
    if native is not None:
        _dispatch.VARIANTS["native"] = native
    builds = ["baseline", "avx2"] + (["native"] if native is not None else [])
    rng = np.random.default_rng(3)
    rows = []
    try:
        for shape, layout in [((32, 128, 56, 56), "NCHW"), ((32, 128, 56, 56), "NHWC"),
                              ((1, 256, 14, 14), "NCHW"), ((256, 1024), "NC"),
                              ((4, 32, 16, 28, 28), "NDHWC")] if not args.quick else [
                                  ((8, 64, 56, 56), "NCHW"), ((8, 64, 56, 56), "NHWC")]:
            x, dy, axis, p, _, _ = make_case(shape, layout, rng)
            ops = cbn_ops(x, dy, axis, p, nt, np.empty_like(x))
            for op in OPS:
                t = time_interleaved([on_kernels(b, ops[op]) for b in builds],
                                     args.rounds, args.budget)
                row = {"shape": list(shape), "layout": layout, "op": op,
                       "baseline_over_avx2": t[0] / t[1]}
                if native is not None:
                    row["avx2_over_native"] = t[1] / t[2]
                rows.append(row)
    finally:
        _dispatch.VARIANTS.pop("native", None)
    return rows


# ------------------------------------------------------------------ reporting

HEADER = (f"{'shape':<18}{'layout':<7}{'op':<10}{'thr':>3}{'MB':>7}{'roof us':>10}"
          f"{'cbn out=':>10}{'cbn':>10}{'NumPy':>10}{'PyTorch':>10}{'ORT':>9}"
          f"{'roof%':>7}{'floor%':>7}{'bound%':>7}{'xNumPy':>8}{'xTorch':>8}")


def print_cell(c, flush=False):
    t = c["seconds"]

    def us(k):
        return f"{1e6 * t[k]:10.1f}" if k in t else f"{'-':>10}"
    bound = sums_bound(c)
    print(f"{'x'.join(map(str, c['shape'])):<18}{c['layout']:<7}{c['op']:<10}{c['threads']:>3}"
          f"{c['x_bytes'] / 1e6:7.2f}{us('roof')}{us('cbn_out')}{us('cbn')}{us('numpy')}"
          f"{us('torch')}{us('onnxruntime')[1:]}{100 * c['roof_fraction']:6.0f}%"
          f"{100 * c.get('floor_fraction', c['roof_fraction']):6.0f}%"
          + (f"{100 * bound:6.0f}%" if bound is not None else f"{'-':>7}")
          + f"{c['vs_numpy']:8.2f}{c.get('vs_torch', float('nan')):8.2f}", flush=flush)


def summarize(cells, resnet, f16, all_threads, align=(), f16ref=()):
    full = [c for c in cells if c["threads"] == all_threads]
    vs_torch = [c["vs_torch"] for c in full if "vs_torch" in c]
    big = [c for c in full if c["x_bytes"] >= 1e6]
    planar_tb = [c for c in big if c["op"] in ("training", "backward")
                 and c["layout"] in PLANAR]
    planar_ch = [c for c in planar_tb if "channel_bound" in c]
    bounded = {cell_name(c): b for c in big if (b := sums_bound(c)) is not None}
    f16big = [r for r in f16ref if r["shape"][0] > 1]
    tiny = {c["op"]: 1e6 * c["seconds"]["cbn_out"] for c in full
            if c["shape"] == [1, 16, 8, 8] and c["layout"] == "NCHW"}
    scaling = []
    by_key = {(tuple(c["shape"]), c["layout"], c["op"], c["threads"]): c for c in cells}
    for c in full:
        one = by_key.get((tuple(c["shape"]), c["layout"], c["op"], 1))
        if all_threads > 1 and one is not None and c["x_bytes"] <= 8e6:
            scaling.append((one["seconds"]["cbn_out"] / c["seconds"]["cbn_out"], c))
    s = {
        "cells": len(full),
        "geomean_vs_torch": math.exp(np.mean(np.log(vs_torch))) if vs_torch else None,
        # what the geomean would be with cbn at floor_seconds in every cell
        "geomean_vs_torch_at_floor": math.exp(np.mean(np.log(
            [c["seconds"]["torch"] / floor_seconds(c) for c in full if "vs_torch" in c])))
        if vs_torch else None,
        "worst_vs_torch": min(vs_torch) if vs_torch else None,
        "worst_vs_torch_cell": cell_name(min(full, key=lambda c: c.get("vs_torch", 1e9)))
        if vs_torch else None,
        "worst_roof_fraction_1MB": min(c["roof_fraction"] for c in big) if big else None,
        "worst_roof_cell": cell_name(min(big, key=lambda c: c["roof_fraction"])) if big else None,
        "worst_planar_train_backward_roof": min(c["roof_fraction"] for c in planar_tb)
        if planar_tb else None,
        "worst_floor_fraction_1MB": min(c.get("floor_fraction", c["roof_fraction"])
                                        for c in big) if big else None,
        # the least roof fraction the float64 sums alone allow in cells >= 1 MB, and the
        # cells where they rule the 0.85 target out
        "worst_sums_bound_1MB": min(bounded.values()) if bounded else None,
        "worst_sums_bound_cell": min(bounded, key=bounded.get) if bounded else None,
        "sums_bound_below_target_1MB": {k: v for k, v in bounded.items()
                                        if v < ROOF_TARGET},
        # planar training/backward: the best roof fraction that channel-order sums plus
        # the output's write allow, and cbn's time against that floor
        "worst_planar_channel_bound": min(c["channel_bound"] for c in planar_ch)
        if planar_ch else None,
        "worst_planar_channel_bound_cell": cell_name(min(planar_ch,
                                                         key=lambda c: c["channel_bound"]))
        if planar_ch else None,
        "planar_channel_floor_fraction": [min(c["channel_floor_fraction"] for c in planar_ch),
                                          max(c["channel_floor_fraction"] for c in planar_ch)]
        if planar_ch else None,
        "tiny_1x16x8x8_us": tiny,
        "worst_2thread_speedup_le_8MB": min(scaling, key=lambda t: t[0])[0] if scaling else None,
        "worst_2thread_cell": cell_name(min(scaling, key=lambda t: t[0])[1]) if scaling else None,
        "resnet50_vs_torch": resnet.get("vs_torch"),
        "resnet50_torch_over_roof": resnet.get("torch_over_roof"),
        "resnet50_torch_over_read": resnet.get("torch_over_read"),
        "resnet50_cbn_over_read": resnet.get("cbn_over_read"),
        "resnet50_hot_vs_torch": resnet.get("hot_vs_torch"),
        "max_peak_alloc_over_x": max((c.get("peak_alloc_bytes", 0) / c["x_bytes"] for c in full),
                                     default=None),
        "worst_f16_over_f32_per_byte": max(r["f16_over_f32_per_byte"] for r in f16) if f16 else None,
        "worst_f16_over_f32_cold_per_byte": max((r["f16_over_f32_cold_per_byte"] for r in f16
                                                 if "f16_over_f32_cold_per_byte" in r),
                                                default=None),
        # what those compare with (f16_references) beyond the caches: [least, most]
        "f16_read_over_f32_per_byte": _span(f16big, "read_f16_over_f32_per_byte"),
        "f16_read_over_f32_cold_per_byte": _span(f16big, "read_f16_over_f32_cold_per_byte"),
        "f16_stats_over_read": _span(f16big, "f16_stats_over_read"),
        "f32_stats_over_read": _span(f16big, "f32_stats_over_read"),
        # above 1: no float16 output pass can match float32 per byte in that cell
        "f16_conversion_floor_over_f32_per_byte": {
            cell_name(r): r["f16_conversion_floor_over_f32_per_byte"] for r in f16
            if "f16_conversion_floor_over_f32_per_byte" in r},
        "worst_misaligned_over_aligned": max(r["misaligned_over_aligned"] for r in align)
        if align else None,
    }
    return s


# Issue 3's targets (float32, all cores, ratios within one run) as targets() checks them
TARGET_VS_TORCH, TARGET_GEOMEAN, TARGET_PLANAR = 1.0, 2.5, 1.2
TARGET_TINY_US = {"inference": 2.0, "training": 4.0, "backward": 5.0}
TARGET_SPEEDUP, SPEEDUP_MAX_BYTES = 1.7, 8e6
TARGET_RESNET = 2.0
# "no temporary allocation proportional to x": a call's peak allocation with out= at
# most this many bytes per channel and thread, plus PEAK_SLACK for Python's objects
PEAK_PER_CHANNEL_THREAD, PEAK_SLACK = 64, 4096


def _lo_hi(v, fmt="{:.2f}"):
    return fmt.format(min(v)) if min(v) == max(v) else f"{fmt.format(min(v))}-{fmt.format(max(v))}"


def _mb(c):
    return f"{c['x_bytes'] / 1e6:.1f} MB" if c["x_bytes"] >= 1e5 else f"{c['x_bytes'] / 1e3:.0f} KB"


def targets(record):
    """Issue 3's targets against one results record, as rows of (target, asked, measured,
    verdict, reference): verdict "met" or "not met", for the targets the record has the
    data of; reference: what bench measured alongside that bounds the target on the
    machine (the float64 sums and output pass of the floor model, the channel-order
    floor, the roof copy's own two-thread speedup, PyTorch's time over the roof, the
    float16 conversion floor)."""
    cells = record["cells"]
    nt = max(c["threads"] for c in cells)
    full = [c for c in cells if c["threads"] == nt]
    one = {(tuple(c["shape"]), c["layout"], c["op"]): c for c in cells if c["threads"] == 1}
    s = summarize(cells, {}, [], nt)        # the worst cell, the geomean, (1,16,8,8)
    rows = []

    def row(target, asked, measured, ok, reference=""):
        rows.append({"target": target, "asked": asked, "measured": measured,
                     "verdict": "met" if ok else "not met", "reference": reference})

    if s["worst_vs_torch"] is not None:
        row("speed vs PyTorch, every cell (both allocating)", f">= {TARGET_VS_TORCH:.1f}x",
            f"worst {s['worst_vs_torch']:.2f}x ({s['worst_vs_torch_cell']})",
            s["worst_vs_torch"] >= TARGET_VS_TORCH)
        row("speed vs PyTorch, geometric mean", f">= {TARGET_GEOMEAN:.1f}x",
            f"{s['geomean_vs_torch']:.2f}x", s["geomean_vs_torch"] >= TARGET_GEOMEAN)
    big = [c for c in full if c["x_bytes"] >= 1e6]
    if big:
        low = [c for c in big if c["roof_fraction"] < ROOF_TARGET]
        worst = min(big, key=lambda c: c["roof_fraction"])
        # the floor model's roof fraction: the roof's time over (sums + output pass)
        allow = [(c, c["roof_fraction"] / c["floor_fraction"]) for c in low
                 if "floor_fraction" in c and c["op"] != "inference"]
        row("roof fraction, cells of 1 MB or more", f">= {ROOF_TARGET:.2f}",
            f"{len(big) - len(low)} of {len(big)} cells; worst {worst['roof_fraction']:.2f} "
            f"({cell_name(worst)}, {_mb(worst)})" + (
                "; below: " + ", ".join(f"{cell_name(c)} {c['roof_fraction']:.2f}" for c in low)
                if low else ""),
            not low,
            "the floor model (the float64 sums alone, then the output pass at the copy's "
            "speed; a model, not a bound) allows " + ", ".join(
                f"{cell_name(c)} {a:.2f}" for c, a in allow) if allow else "")
    planar = [c for c in big if c["op"] in ("training", "backward") and c["layout"] in PLANAR]
    if planar:
        low = [c for c in planar if c["roof_fraction"] < TARGET_PLANAR]
        bound = [c["channel_bound"] for c in low if "channel_bound" in c]
        row("roof fraction, planar training and backward (1 MB or more)",
            f">= {TARGET_PLANAR:.1f}",
            ", ".join(f"{_mb(c)} {c['op']} {c['roof_fraction']:.2f}" for c in planar),
            not low,
            f"the channel-order floor allows {_lo_hi(bound)} where not met" if bound else "")
    tiny = s["tiny_1x16x8x8_us"]
    if len(tiny) == 3:
        row("(1,16,8,8) NCHW with out=, per call",
            " / ".join(f"{TARGET_TINY_US[o]:.0f}" for o in OPS) + " us",
            " / ".join(f"{tiny[o]:.2f}" for o in OPS) + " us",
            all(tiny[o] <= TARGET_TINY_US[o] for o in OPS))
    if nt > 1:
        groups = {}
        for c in full:
            o = one.get((tuple(c["shape"]), c["layout"], c["op"]))
            if o is not None and c["x_bytes"] <= SPEEDUP_MAX_BYTES:
                g = groups.setdefault(_mb(c), (c["x_bytes"], [], []))
                g[1].append(o["seconds"]["cbn_out"] / c["seconds"]["cbn_out"])
                g[2].append(o["seconds"]["roof"] / c["seconds"]["roof"])
        if groups:
            order = sorted(groups, key=lambda k: -groups[k][0])     # largest first
            row(f"{nt} threads over 1, cells of at most {SPEEDUP_MAX_BYTES / 1e6:.0f} MB",
                f">= {TARGET_SPEEDUP:.1f}x",
                ", ".join(f"{k} {_lo_hi(groups[k][1])}x" for k in order),
                all(v >= TARGET_SPEEDUP for g in groups.values() for v in g[1]),
                "the roof's copy itself: " + ", ".join(f"{k} {_lo_hi(groups[k][2])}x"
                                                       for k in order))
    r = record.get("resnet50") or {}
    if "vs_torch" in r:
        row("ResNet-50 batch-1 BN inference summed, vs PyTorch", f">= {TARGET_RESNET:.0f}x",
            f"{r['vs_torch']:.2f}x (inputs from memory)"
            + (f", {r['hot_vs_torch']:.2f}x (each in cache)" if "hot_vs_torch" in r else ""),
            r["vs_torch"] >= TARGET_RESNET and r.get("hot_vs_torch", TARGET_RESNET) >= TARGET_RESNET,
            f"PyTorch takes {r['torch_over_roof']:.2f}x the roof's time from memory"
            + (f", {r['hot_torch_over_roof']:.2f}x in cache" if "hot_torch_over_roof" in r else "")
            + ": cbn at the roof would be that much faster"
            + (f"; from memory PyTorch takes {r['torch_over_read']:.2f}x the time of only "
               f"reading the inputs, so {TARGET_RESNET:.0f}x would ask cbn (now "
               f"{r['cbn_over_read']:.2f}x) for {r['torch_over_read'] / TARGET_RESNET:.2f}x "
               "it, while every batch norm reads its whole input"
               if "torch_over_read" in r and "cbn_over_read" in r else ""))
    peaks = [c for c in full if "peak_alloc_bytes" in c]
    if peaks:
        per = max(peaks, key=lambda c: c["peak_alloc_bytes"] / (c["shape"][1] * nt))
        worst = max(peaks, key=lambda c: c["peak_alloc_bytes"])
        row("peak allocation of a call with out=", "x + out + O(C x threads): at most "
            f"{PEAK_PER_CHANNEL_THREAD} bytes per channel and thread + {PEAK_SLACK} bytes",
            f"at most {worst['peak_alloc_bytes']} bytes ({cell_name(worst)}); "
            f"{per['peak_alloc_bytes'] / (per['shape'][1] * nt):.1f} bytes per channel and "
            f"thread at most ({cell_name(per)})",
            all(c["peak_alloc_bytes"] <= PEAK_PER_CHANNEL_THREAD * c["shape"][1] * nt + PEAK_SLACK
                for c in peaks))
    f16 = record.get("float16") or []
    if f16:
        mem = [r["f16_over_f32_per_byte"] for r in f16 if r["shape"][0] > 1]
        cold = [r[F16_COLD_KEY] for r in f16 if F16_COLD_KEY in r]
        hot = [r["f16_over_f32_per_byte"] for r in f16 if r["shape"][0] == 1]
        conv = [r["f16_conversion_floor_over_f32_per_byte"] for r in f16
                if "f16_conversion_floor_over_f32_per_byte" in r and r["shape"][0] == 1]
        allv = mem + cold + hot
        row("float16 time per byte / float32's", "<= 1.00",
            ", ".join(f"{what} {_lo_hi(v)}" for what, v in (
                ("beyond the caches", mem), ("evicted first", cold), ("in cache", hot)) if v),
            max(allv) <= 1.0,
            f"converting every value in and out alone takes {_lo_hi(conv)}x float32's "
            "inference per byte in cache" if conv else "")
    return rows


def targets_markdown(rows):
    lines = ["| target | asked | measured | verdict | what bounds it here |", "|---|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['asked']} | {r['measured']} | {r['verdict']} | "
              f"{r['reference'] or '-'} |" for r in rows]
    return "\n".join(lines)


def _span(rows, key):
    """[least, most] of the rows' `key` (None if no row has it)."""
    v = [r[key] for r in rows if key in r]
    return [min(v), max(v)] if v else None


def cell_name(c):
    return f"{'x'.join(map(str, c['shape']))} {c['layout']} {c['op']}"


def ratio_list(rows, key):
    """'shape layout op ratio, ...' for the rows' ratio `key` (rows without it left out)."""
    return ", ".join(f"{cell_name(r)} {r[key]:.2f}" for r in rows if key in r)


F16_COLD_KEY = "f16_over_f32_cold_per_byte"
F16_COLD = ("float16 time per byte / float32 time per byte, every array evicted from the caches "
            "before each call (cbn out=)")
F16_FLOOR = ("float16 conversion floor per byte (every value converted in and out by F16C, "
             "no arithmetic) / float32 inference time per byte")


def f16_reference_lines(refs):
    """(what, ratios) lines of the float16 references (f16_references)."""
    def where(r):
        return f"{'x'.join(map(str, r['shape']))} {r['layout']}"

    def names(key):
        return ", ".join(f"{where(r)} {r[key]:.2f}" for r in refs if key in r)
    lines = []
    if refs:
        lines.append(("a plain read of x (the roof's read), float16 time per byte / float32 "
                      "time per byte", names("read_f16_over_f32_per_byte")))
    if any("read_f16_over_f32_cold_per_byte" in r for r in refs):
        lines.append(("the same, every array evicted from the caches before each call",
                      names("read_f16_over_f32_cold_per_byte")))
    if refs:
        lines.append(("cbn statistics time / a plain read of the same x, float32 and float16",
                      ", ".join(f"{where(r)} {r['f32_stats_over_read']:.2f} and "
                                f"{r['f16_stats_over_read']:.2f}" for r in refs)))
    return lines


def plot(cells, all_threads, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    full = [c for c in cells if c["threads"] == all_threads]
    labels = [f"{'x'.join(map(str, c['shape']))}\n{c['layout']} {c['op'][:5]}" for c in full]
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.42 * len(full)), 8), sharex=True)
    xs = np.arange(len(full))
    colors = {"inference": "tab:blue", "training": "tab:orange", "backward": "tab:green"}
    col = [colors[c["op"]] for c in full]
    if any("vs_torch" in c for c in full):
        axes[0].bar(xs, [c.get("vs_torch", 0) for c in full], color=col)
        axes[0].axhline(1.0, color="k", lw=0.8)
        axes[0].set_ylabel("speed vs PyTorch (x)")
        axes[0].set_yscale("log")
    axes[1].bar(xs, [min(c["roof_fraction"], 2.0) for c in full], color=col)
    axes[1].plot(xs, [min(c.get("floor_fraction", c["roof_fraction"]), 2.0) for c in full],
                 "k_", ms=12, mew=2, label="floor fraction (float64 sums + output pass)")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[1].set_ylim(0, 2.0)   # in-cache cells can exceed the DRAM-sized copy: clipped
    axes[1].axhline(0.85, color="r", lw=0.8, ls="--")
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set_ylabel("roof fraction (cbn out=)")
    axes[1].set_xticks(xs)
    axes[1].set_xticklabels(labels, rotation=90, fontsize=7)
    axes[0].set_title(f"cbn {cbn.__version__}, float32, {all_threads} threads, "
                      f"kernels: {_dispatch.active()}")
    from matplotlib.patches import Patch
    axes[0].legend(handles=[Patch(color=v, label=k) for k, v in colors.items()], loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def markdown(record):
    """The README's tables from a results record."""
    all_threads = max(c["threads"] for c in record["cells"])
    cells = [c for c in record["cells"] if c["threads"] == all_threads]
    lines = [targets_markdown(targets(record)), "",
             "| shape | layout | op | MB | roof us | cbn out= us | cbn us | NumPy us | PyTorch us "
             "| roof fraction | floor fraction | sums bound | vs PyTorch |",
             "|" + "---|" * 13]
    for c in cells:
        t, bound = c["seconds"], sums_bound(c)
        lines.append(
            f"| {'x'.join(map(str, c['shape']))} | {c['layout']} | {c['op']} | "
            f"{c['x_bytes'] / 1e6:.2f} | {1e6 * t['roof'] * ROOF_FACTOR[c['op']]:.0f} | "
            f"{1e6 * t['cbn_out']:.1f} | {1e6 * t['cbn']:.1f} | {1e6 * t['numpy']:.1f} | "
            + (f"{1e6 * t['torch']:.1f} | " if "torch" in t else "- | ")
            + f"{c['roof_fraction']:.2f} | {c.get('floor_fraction', c['roof_fraction']):.2f} | "
            + (f"{bound:.2f} | " if bound is not None else "- | ")
            + (f"{c['vs_torch']:.2f} |" if "vs_torch" in c else "- |"))
    planar = [c for c in cells if "channel_bound" in c]
    if planar:
        measured = all("write" in c["seconds"] for c in planar)
        lines += ["", "Planar training and backward against their channel-order floor (the "
                  "float64 sums read channel by channel, then the output's stores"
                  + (": the quicker of plain and streaming stores of x's bytes, measured "
                     "with the cell; write = their time / a copy's):" if measured else
                     " at half a copy's time):"), "",
                  "| shape | layout | op | MB | roof fraction | best roof fraction that floor "
                  "allows | floor time / cbn out= time |" + (" write |" if measured else ""),
                  "|" + "---|" * (8 if measured else 7)]
        lines += [f"| {'x'.join(map(str, c['shape']))} | {c['layout']} | {c['op']} | "
                  f"{c['x_bytes'] / 1e6:.2f} | {c['roof_fraction']:.2f} | "
                  f"{c['channel_bound']:.2f} | {c['channel_floor_fraction']:.2f} |"
                  + (f" {write_seconds(c['seconds']) / c['seconds']['roof']:.2f} |"
                     if measured else "")
                  for c in planar]
    r = record["resnet50"]
    lines.append("")
    for tag, what in (("", "cold, inputs from memory"), ("hot_", "hot, each input in cache")):
        if r.get(tag + "seconds"):
            lines.append(f"ResNet-50 batch 1, inference of its {r['layers']} BN layers summed "
                         f"({what}): " + ", ".join(f"{k} {1e6 * v:.0f} us"
                                                   for k, v in r[tag + "seconds"].items())
                         + (f"; cbn {r[tag + 'vs_torch']:.2f}x faster than PyTorch, PyTorch "
                            f"at {r[tag + 'torch_over_roof']:.2f}x the roof's time"
                            if tag + "vs_torch" in r else "")
                         + read_note(r, tag))
            lines.append("")
    if record.get("float16"):
        lines.append("float16 time per byte / float32 time per byte (cbn `out=`): "
                     + ratio_list(record["float16"], "f16_over_f32_per_byte") + ".")
        lines.append("")
        if any(F16_COLD_KEY in r for r in record["float16"]):
            lines.append(F16_COLD + ": " + ratio_list(record["float16"], F16_COLD_KEY) + ".")
            lines.append("")
        if any("f16_conversion_floor_over_f32_per_byte" in r for r in record["float16"]):
            lines.append(F16_FLOOR + ": " + ratio_list(
                record["float16"], "f16_conversion_floor_over_f32_per_byte") + ".")
            lines.append("")
        for what, line in f16_reference_lines(record.get("float16_references", [])):
            lines.append(f"{what[0].upper()}{what[1:]}: {line}.")
            lines.append("")
    if record.get("simd"):
        lines.append("Portable baseline (SSE2) build time / AVX2 build time: "
                     + ratio_list(record["simd"], "baseline_over_avx2") + ".")
        lines.append("")
    if record.get("alignment"):
        lines.append("Time with x, dy and out 16 bytes into a 64-byte line / 64-byte-aligned "
                     "(cbn `out=`): " + ratio_list(record["alignment"], "misaligned_over_aligned")
                     + ".")
        lines.append("")
    if any("avx2_over_native" in f for f in record.get("simd", [])):
        lines.append("AVX2 build time / the same source built with -march=native here: "
                     + ratio_list(record["simd"], "avx2_over_native") + ".")
        lines.append("")
    return "\n".join(lines)


def alignment_only(args):
    """--alignment: run_alignment alone, printed and kept as <stamp>-alignment.json."""
    args.rounds = args.rounds or 15
    args.budget = args.budget or 0.01
    nt = cbn.get_num_threads()
    print(f"cbn {cbn.__version__} from {os.path.dirname(cbn.__file__)} (kernels: "
          f"{_dispatch.active()}), {nt} threads")
    rows = run_alignment(args, nt)
    for r in rows:
        print(f"{cell_name(r):<28} misaligned / aligned {r['misaligned_over_aligned']:.2f}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{stamp}-alignment.json")
    with open(path, "w") as f:
        json.dump({"when": stamp, "mode": "alignment", "machine": machine(),
                   "cbn_path": os.path.dirname(cbn.__file__), "alignment": rows}, f, indent=1,
                  default=str)
    print(f"wrote {path}")
    return rows


def machine():
    cfg = cbn.show_config(print_out=False)
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "cbn": cfg}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f
                                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats (about a minute)")
    ap.add_argument("--smoke", action="store_true",
                    help="one tiny shape, one round, cbn and NumPy only (for the test suite)")
    ap.add_argument("--shape", action="append", type=lambda s: tuple(map(int, s.split("x"))),
                    help="only this shape's cells, e.g. 4x32x16x28x28 (repeatable; no ResNet, "
                         "float16 or SIMD extras; results tagged 'subset')")
    ap.add_argument("--alignment", action="store_true",
                    help="only the alignment extra (misaligned against aligned arrays; "
                         "results tagged 'alignment')")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per cell")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the cells, the ResNet sums and the float16 ratios this many "
                         "times and keep each one's median over the runs (the machine's slow "
                         "phases last minutes)")
    ap.add_argument("--budget", type=float, default=None, help="seconds per timing sample")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--report", metavar="JSON", help="print a results file as markdown tables")
    args = ap.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            print(markdown(json.load(f)))
        return None
    if args.alignment:
        return alignment_only(args)
    extras = not (args.smoke or args.shape)
    if args.smoke:
        args.quick = args.no_torch = args.no_ort = True
        args.rounds, args.budget = 1, 1e-4
    args.rounds = args.rounds or (5 if args.quick else 15)
    args.budget = args.budget or (0.004 if args.quick else 0.01)

    torch = ort = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    if not args.no_ort:
        try:
            import onnxruntime as ort
            import onnx  # noqa: F401  (builds the one-node models)
        except ImportError:
            ort = None
    all_threads = cbn.get_num_threads()
    roof = build_roof()
    print(f"cbn {cbn.__version__} (kernels: {_dispatch.active()}), NumPy {np.__version__}, "
          f"PyTorch {torch.__version__ if torch else '-'}, "
          f"ONNX Runtime {ort.__version__ if ort else '-'}, all cores = {all_threads} threads")
    print("median us per call; roof% = roof time for the op's unfused bytes / cbn out= time; "
          "floor% = (the op's float64 sums alone + its output pass at the roof's speed) / "
          "cbn out= time; bound% = the best roof% those sums alone allow (roof time / "
          "their time); xNumPy, xTorch = their time / cbn's (both allocating)")
    print(HEADER)
    t0 = time.time()
    runs, resnets, f16s, f16refs = [], [], [], []
    for k in range(args.repeat):
        if args.repeat > 1:
            print(f"-- run {k + 1} of {args.repeat}", flush=True)
        runs.append(run_cells(args, roof, torch, ort, all_threads))
        if extras:
            resnets.append(run_resnet50(args, roof, torch, ort, all_threads))
            rows, refs = run_float16(args, all_threads, roof)
            f16s.append(rows)
            f16refs.append(refs)
    cells = merge_runs(runs) if args.repeat > 1 else runs[0]
    if args.repeat > 1:
        print(f"-- medians of the {args.repeat} runs")
        print(HEADER)
        for c in cells:
            print_cell(c)
    resnet = {"layers": 0, "threads": all_threads, "seconds": {}, "hot_seconds": {}}
    if resnets:
        resnet = resnets[0] if len(resnets) == 1 else resnet_ratios({
            "layers": resnets[0]["layers"], "threads": all_threads, "runs": len(resnets),
            **{tag: {k: float(np.median([r[tag][k] for r in resnets])) for k in resnets[0][tag]}
               for tag in ("seconds", "hot_seconds")}})
    for tag, what in (("", "cold (inputs from memory)"), ("hot_", "hot (each input in cache)")):
        secs = resnet[tag + "seconds"]
        print(f"\nResNet-50 batch-1 BN inference, {resnet['layers']} layers summed, "
              f"{all_threads} threads, {what}: "
              + ", ".join(f"{k} {1e6 * v:.0f} us" for k, v in secs.items())
              + (f"; cbn {resnet[tag + 'vs_torch']:.2f}x faster than PyTorch, PyTorch at "
                 f"{resnet[tag + 'torch_over_roof']:.2f}x the roof's time"
                 if tag + "vs_torch" in resnet else "")
              + read_note(resnet, tag))
    f16 = merge_float16(f16s)
    print("\nfloat16 time per byte / float32 time per byte (cbn out=, all cores): "
          + ratio_list(f16, "f16_over_f32_per_byte"))
    if any(F16_COLD_KEY in r for r in f16):
        print(f"\n{F16_COLD} (all cores): " + ratio_list(f16, F16_COLD_KEY))
    if any("f16_conversion_floor_over_f32_per_byte" in r for r in f16):
        print(f"\n{F16_FLOOR} (all cores): "
              + ratio_list(f16, "f16_conversion_floor_over_f32_per_byte"))
    f16ref = merge_float16(f16refs)
    for what, line in f16_reference_lines(f16ref):
        print(f"\n{what} (all cores): {line}")
    align = run_alignment(args, all_threads) if extras else []
    print("\ntime with x, dy and out 16 bytes into a 64-byte line / 64-byte-aligned (cbn out=, "
          "all cores): " + ratio_list(align, "misaligned_over_aligned"))
    native = build_native() if extras else None
    simd = run_simd(args, all_threads, native) if extras else []
    if simd:
        print("\nportable baseline build time / AVX2 build time (cbn out=, all cores): "
              + ratio_list(simd, "baseline_over_avx2"))
    if any("avx2_over_native" in r for r in simd):
        print("\nAVX2 build time / -march=native build time (cbn out=, all cores): "
              + ratio_list(simd, "avx2_over_native"))
    summary = summarize(cells, resnet, f16, all_threads, align, f16ref)
    print("\nSUMMARY " + json.dumps(summary, default=str))
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = "smoke" if args.smoke else (
        "subset" if args.shape else ("quick" if args.quick else "full"))
    record = {"when": stamp, "mode": tag, "seconds_total": time.time() - t0,
              "timing": {"rounds": args.rounds, "budget_s": args.budget,
                         "warm_calls": WARM_CALLS, "repeat": args.repeat},
              "machine": machine(), "versions": {
                  "numpy": np.__version__, "torch": torch.__version__ if torch else None,
                  "onnxruntime": ort.__version__ if ort else None, "python": sys.version},
              "summary": summary, "cells": cells, "resnet50": resnet, "float16": f16,
              "float16_references": f16ref,
              "alignment": align, "simd": simd, "native_build": {
                  "flags": "-march=native", "simd": native.build_info()["simd"]} if native else None}
    record["targets"] = targets(record)
    print("\nTARGETS (issue 3; float32, all cores)\n" + targets_markdown(record["targets"]))
    for name in (f"{stamp}-{tag}.json", f"latest-{tag}.json"):
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(record, f, indent=1, default=str)
    png = plot(cells, all_threads, os.path.join(args.out, f"latest-{tag}.png"))
    print(f"\nwrote {os.path.join(args.out, f'latest-{tag}.json')}" + (f" and {png}" if png else ""))
    return record


if __name__ == "__main__":
    main()
