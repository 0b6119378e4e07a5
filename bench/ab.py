"""In-process A/B of one of cbn's kernel settings, cell by cell.

    python bench/ab.py table_shift None,2048 256x1024:NC:backward 512x512:NC:training
    python bench/ab.py by_columns True,False,True 1x7x7x2048:NHWC:backward:float64 --threads 2

SETTING is a setter of the kernels cbn runs (cbn._dispatch.kernels: table_shift,
by_columns, stream_from, ...; each takes the new value and returns the old one).
VALUES are Python literals (None, True, False, numbers), comma-separated. A cell is
SHAPE:LAYOUT:OP[:DTYPE]: LAYOUT one of NCHW, NHWC, NC, NCDHW, NDHWC (the shape is
always given channels second, as bench/run.py takes it), OP one of inference,
training, backward, statistics, DTYPE float32 (default), float64 or float16.

Every round times each value once per cell, in a new order each round (bench/run.py
time_interleaved: a sample starts after two untimed calls), every call setting its
value first (a call of the setter, well under 0.1 us and the same for every value: it
pulls the ratios of calls of a few microseconds slightly towards 1); the medians over
the rounds are printed, and each value's time over the first value's.  The values alternate inside one process, so that they
share the machine's phase: on a shared VM the same build timed in separate processes
one after the other moved 0.55-1.6x within minutes.  Listing a value twice
(None,2048,None) shows the run's own spread.  The setting is restored at the end.
The kernels' comments and the README quote runs like these as "in one process".
"""

import argparse
import ast
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as B  # noqa: E402  (bench/run.py: cases, ops, interleaved timing)

import cbn  # noqa: E402
from cbn import _dispatch  # noqa: E402

LAYOUTS = ("NCHW", "NHWC", "NC", "NCDHW", "NDHWC")
OPS = ("inference", "training", "backward", "statistics")
DTYPES = ("float32", "float64", "float16")


def parse_cell(text):
    """(shape, layout, op, dtype) from SHAPE:LAYOUT:OP[:DTYPE]; ValueError naming what is
    wrong."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"cell {text!r}: expected SHAPE:LAYOUT:OP[:DTYPE]")
    shape, layout, op = parts[:3]
    dtype = parts[3] if len(parts) == 4 else "float32"
    try:
        dims = tuple(int(d) for d in shape.split("x"))
    except ValueError:
        raise ValueError(f"cell {text!r}: shape {shape!r} is not like 256x1024") from None
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"cell {text!r}: shape needs two or more positive sizes")
    if layout not in LAYOUTS:
        raise ValueError(f"cell {text!r}: layout {layout!r}, expected one of {LAYOUTS}")
    if op not in OPS:
        raise ValueError(f"cell {text!r}: op {op!r}, expected one of {OPS}")
    if dtype not in DTYPES:
        raise ValueError(f"cell {text!r}: dtype {dtype!r}, expected one of {DTYPES}")
    if (layout == "NC") != (len(dims) == 2):
        raise ValueError(f"cell {text!r}: layout NC takes 2-D shapes, and only it does")
    return dims, layout, op, dtype


def parse_values(text):
    """The comma-separated Python literals of VALUES."""
    try:
        values = [ast.literal_eval(v.strip()) for v in text.split(",")]
    except (ValueError, SyntaxError):
        raise ValueError(f"values {text!r}: expected Python literals such as None,2048")
    if len(values) < 2:
        raise ValueError(f"values {text!r}: give two or more values to compare")
    return values


def setter(name, values):
    """The kernels' setter called name, checked: called bare it returns the setting, and
    it takes every value (each set in turn, then the setting set back)."""
    fn = getattr(_dispatch.kernels, name, None)
    where = _dispatch.kernels.__name__
    if name.startswith("_") or not callable(fn):
        raise ValueError(f"setting {name!r}: no such setter in {where}")
    try:
        old = fn()
    except TypeError:
        raise ValueError(f"setting {name!r}: {where}.{name} is not a setting") from None
    changed = False
    try:
        for v in values:
            fn(v)
            changed = True
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"setting {name!r} does not take {v!r}: {e}") from None
    finally:
        if changed:
            fn(old)
    return fn


def cell_op(shape, layout, op, dtype, nt, rng):
    """One call of the cell's op with out= (statistics: batch_stats)."""
    x, dy, axis, p, _, _ = B.make_case(shape, layout, rng, np.dtype(dtype))
    if op == "statistics":
        return lambda: cbn.batch_stats(x, axis=axis, n_threads=nt)
    return B.cbn_ops(x, dy, axis, p, nt, np.empty_like(x))[op]


def compare(name, values, cells, threads, rounds, budget):
    """[(cell text, threads, [median seconds per value])], the setting restored after."""
    fn = setter(name, values)
    old = fn(values[0])
    rng = np.random.default_rng(0)
    rows = []
    try:
        for text in cells:
            shape, layout, op, dtype = parse_cell(text)
            for nt in threads:
                call = cell_op(shape, layout, op, dtype, nt, rng)
                fns = [(lambda v=v: (fn(v), call())) for v in values]
                rows.append((text, nt, B.time_interleaved(fns, rounds, budget)))
    finally:
        fn(old)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("setting", help="a setter of cbn._dispatch.kernels, e.g. table_shift")
    ap.add_argument("values", help="comma-separated Python literals, e.g. None,2048")
    ap.add_argument("cells", nargs="+", help="SHAPE:LAYOUT:OP[:DTYPE], e.g. 256x1024:NC:backward")
    ap.add_argument("--threads", default=None,
                    help="comma-separated thread counts (default: 1 and all cores)")
    ap.add_argument("--rounds", type=int, default=11, help="interleaved rounds (medians)")
    ap.add_argument("--budget", type=float, default=0.02, help="seconds per timing sample")
    args = ap.parse_args(argv)
    try:
        values = parse_values(args.values)
        for text in args.cells:
            parse_cell(text)
        setter(args.setting, values)
        if args.threads is None:
            threads = sorted({1, cbn.get_num_threads()})
        else:
            threads = [int(t) for t in args.threads.split(",")]
        if min(threads) < 1 or args.rounds < 1 or args.budget <= 0:
            raise ValueError("--threads, --rounds and --budget must be positive")
    except ValueError as e:
        ap.error(str(e))
    rows = compare(args.setting, values, args.cells, threads, args.rounds, args.budget)
    names = [repr(v) for v in values]
    print(f"{args.setting}: {', '.join(names)}; kernels {_dispatch.kernels.__name__}, "
          f"medians of {args.rounds} rounds, us per call (with out=), and each value's "
          f"time over {names[0]}'s")
    for text, nt, t in rows:
        us = " ".join(f"{n}={s * 1e6:.1f}" for n, s in zip(names, t))
        ratio = " ".join(f"{s / t[0]:.2f}" for s in t[1:])
        print(f"{text:36s} {nt} thr  {us}  ratio {ratio}", flush=True)
    return rows


if __name__ == "__main__":
    main()
