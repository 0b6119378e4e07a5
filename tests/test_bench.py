"""The benchmark suite runs (a smoke run on one tiny shape; timings are not checked here)."""

import json
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "run.py"


def test_bench_smoke(tmp_path):
    res = subprocess.run([sys.executable, str(BENCH), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "SUMMARY" in res.stdout
    record = json.loads((tmp_path / "latest-smoke.json").read_text())
    cells = record["cells"]
    # NCHW and NHWC x three ops x threads {1, all}
    assert {(c["layout"], c["op"]) for c in cells} == {
        (lay, op) for lay in ("NCHW", "NHWC") for op in ("inference", "training", "backward")}
    for c in cells:
        t = c["seconds"]
        assert t["roof"] > 0 and t["cbn_out"] > 0 and t["numpy"] > 0
        assert c["roof_fraction"] > 0
        if c["op"] != "inference":      # the float64 sums alone, timed in the same round
            assert t["acc"] > 0 and c["floor_fraction"] > 0
            assert c["sums_bound"] > 0
        else:
            assert "sums_bound" not in c
    assert record["machine"]["cbn"]["version"]
    assert "sums_bound_below_target_1MB" in record["summary"]
    # issue 3's targets, printed and kept: here (one tiny shape) the peak allocation and,
    # on more than one core, the two-thread speedup
    assert "TARGETS" in res.stdout
    rows = record["targets"]
    assert any(r["target"].startswith("peak allocation") and r["verdict"] in ("met", "not met")
               for r in rows)


def _bench_module():
    sys.path.insert(0, str(BENCH.parent))
    try:
        import run
    finally:
        sys.path.pop(0)
    return run


def test_sums_bound_hand_computed():
    """The best roof fraction the float64 sums alone allow: the roof's time for the op's
    unfused bytes (training 1.5 copies, backward 2.5) over the sums' time."""
    run = _bench_module()
    cell = {"op": "training", "seconds": {"roof": 10e-6, "acc": 20e-6, "cbn_out": 30e-6}}
    assert run.sums_bound(cell) == 1.5 * 10 / 20
    cell["op"] = "backward"
    assert run.sums_bound(cell) == 2.5 * 10 / 20
    cell["op"] = "inference"                    # no sums, no bound
    assert run.sums_bound(cell) is None
    assert run.sums_bound({"op": "training", "seconds": {"roof": 1.0}}) is None
    # the summary lists the cells >= 1 MB whose sums rule the 0.85 target out
    cells = [run.derive({"shape": [256, 1024], "layout": "NC", "op": op, "threads": 2,
                         "x_bytes": 1 << 20,
                         "seconds": {"roof": 10e-6, "acc": acc, "cbn_out": 40e-6,
                                     "cbn": 40e-6, "numpy": 1e-3}})
             for op, acc in (("inference", 0.0), ("training", 20e-6), ("backward", 25e-6))]
    s = run.summarize(cells, {}, [], 2)
    assert s["sums_bound_below_target_1MB"] == {"256x1024 NC training": 0.75}
    assert s["worst_sums_bound_1MB"] == 0.75
    assert s["worst_sums_bound_cell"] == "256x1024 NC training"


def test_resnet_ratios_hand_computed():
    """The ResNet-50 sums: cbn and PyTorch against the roof and a plain read of the inputs
    (no batch norm reads its inputs in less time); records without the read still work."""
    run = _bench_module()
    res = run.resnet_ratios({
        "seconds": {"roof": 1.0, "read": 0.8, "cbn_out": 1.2, "cbn": 1.1, "torch": 1.6},
        "hot_seconds": {"roof": 0.5, "read": 0.25, "cbn_out": 0.5, "cbn": 0.6, "torch": 1.0}})
    assert res["vs_torch"] == 1.6 / 1.1 and res["torch_over_roof"] == 1.6
    assert res["torch_over_read"] == 2.0 and res["cbn_over_read"] == 1.1 / 0.8
    assert res["hot_torch_over_read"] == 4.0 and res["hot_cbn_over_read"] == 2.0
    assert run.read_note(res, "") == " and 2.00x a plain read of its inputs (cbn 1.38x)"
    secs = {"roof": 1.0, "cbn_out": 1.2, "cbn": 1.1, "torch": 1.6}
    old = run.resnet_ratios({"seconds": secs, "hot_seconds": dict(secs)})
    assert "torch_over_read" not in old and run.read_note(old, "") == ""


def test_bench_alignment_mode(tmp_path):
    """--alignment times cbn on arrays 16 bytes into a cache line against aligned copies
    and keeps the ratios (one quick round here)."""
    res = subprocess.run([sys.executable, str(BENCH), "--alignment", "--rounds", "1",
                          "--budget", "1e-4", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (path,) = tmp_path.glob("*-alignment.json")
    rows = json.loads(path.read_text())["alignment"]
    assert len(rows) == 15 and {r["op"] for r in rows} == {"inference", "training", "backward"}
    assert all(r["misaligned_over_aligned"] > 0 for r in rows)


def test_float16_references_hand_computed():
    """The float16 references (a plain read of the float16 bytes against the float32
    ones, cbn's statistics against a read of the same x): merged as medians over runs,
    summarized as [least, most] over the shapes beyond the caches only, and printed."""
    run = _bench_module()
    big = {"shape": [32, 128, 56, 56], "layout": "NCHW", "read_f16_over_f32_per_byte": 1.02,
           "f32_stats_over_read": 1.0, "f16_stats_over_read": 1.1,
           "read_f16_over_f32_cold_per_byte": 1.07}
    refs = [big,
            dict(big, layout="NHWC", read_f16_over_f32_per_byte=0.98, f32_stats_over_read=1.01,
                 f16_stats_over_read=1.04, read_f16_over_f32_cold_per_byte=0.95),
            {"shape": [1, 64, 56, 56], "layout": "NCHW", "read_f16_over_f32_per_byte": 1.2,
             "f32_stats_over_read": 1.6, "f16_stats_over_read": 2.2}]   # in cache: no cold
    s = run.summarize([], {}, [], 2, (), refs)
    assert s["f16_read_over_f32_per_byte"] == [0.98, 1.02]
    assert s["f16_read_over_f32_cold_per_byte"] == [0.95, 1.07]
    assert s["f16_stats_over_read"] == [1.04, 1.1]
    assert s["f32_stats_over_read"] == [1.0, 1.01]
    assert run.summarize([], {}, [], 2)["f16_stats_over_read"] is None
    other = [dict(r, f16_stats_over_read=r["f16_stats_over_read"] + 0.5) for r in refs]
    merged = run.merge_float16([refs, other, refs])
    assert [m["f16_stats_over_read"] for m in merged] == [1.1, 1.04, 2.2]
    assert merged[0]["runs"] == 3 and merged[2]["shape"] == [1, 64, 56, 56]
    lines = dict(run.f16_reference_lines(refs))
    assert len(lines) == 3
    (cold,) = [v for k, v in lines.items() if "evicted" in k]
    assert cold == "32x128x56x56 NCHW 1.07, 32x128x56x56 NHWC 0.95"
    (stats,) = [v for k, v in lines.items() if "statistics" in k]
    assert stats.endswith("1x64x56x56 NCHW 1.60 and 2.20")
    assert run.f16_reference_lines([]) == []


def _cell(shape, layout, op, threads, x_bytes, **seconds):
    t = {"cbn": seconds.get("cbn_out", 1.0), "numpy": 1.0, **seconds}
    return {"shape": list(shape), "layout": layout, "op": op, "threads": threads,
            "x_bytes": x_bytes, "seconds": t}


def test_targets_hand_computed():
    """Issue 3's targets from a record: each verdict and the bench's reference for it."""
    run = _bench_module()
    big = (8, 64, 112, 112)
    cells = [
        # 25.7 MB planar training: roof 0.9 -> roof fraction 1.5 * 0.9 / 1.0 = 1.35
        _cell(big, "NCHW", "training", 2, 25.7e6, roof=0.9, cbn_out=1.0, acc=0.5, torch=3.0),
        # 25.7 MB channels-last backward: roof fraction 2.5 * 0.3 / 1.0 = 0.75; the floor
        # model 0.5 + 1.5 * 0.3 = 0.95 s allows 0.75 / 0.95 * 1.0
        _cell(big, "NHWC", "backward", 2, 25.7e6, roof=0.3, cbn_out=1.0, acc=0.5, torch=1.5),
        # the same on one thread: speedup not counted (beyond 8 MB)
        _cell(big, "NHWC", "backward", 1, 25.7e6, roof=0.6, cbn_out=1.9, acc=1.0),
        # 0.2 MB inference: two threads 1.5x, the roof's copy 1.2x
        _cell((1, 256, 14, 14), "NCHW", "inference", 2, 0.2e6, roof=1.0, cbn_out=2.0,
              torch=8.0),
        _cell((1, 256, 14, 14), "NCHW", "inference", 1, 0.2e6, roof=1.2, cbn_out=3.0),
    ]
    cells += [_cell((1, 16, 8, 8), "NCHW", op, 2, 4096, roof=1e-6, cbn_out=us * 1e-6,
                    torch=1.0) for op, us in (("inference", 1.5), ("training", 4.5),
                                              ("backward", 2.0))]
    for c in cells:
        run.derive(c)
        if c["threads"] == 2:
            c["peak_alloc_bytes"] = 100
    cells[0]["peak_alloc_bytes"] = 64 * 64 * 2 + 4096 + 1      # one byte over for C = 64
    record = {"cells": cells,
              "resnet50": {"vs_torch": 1.5, "torch_over_roof": 1.8, "hot_vs_torch": 2.2,
                           "hot_torch_over_roof": 2.5, "torch_over_read": 1.9,
                           "cbn_over_read": 1.3},
              "float16": [{"shape": [32, 128, 56, 56], "layout": "NCHW", "op": "inference",
                           "f16_over_f32_per_byte": 0.9, "f16_over_f32_cold_per_byte": 1.1},
                          {"shape": [1, 64, 56, 56], "layout": "NCHW", "op": "inference",
                           "f16_over_f32_per_byte": 1.6,
                           "f16_conversion_floor_over_f32_per_byte": 1.5}]}
    rows = run.targets(record)

    def find(prefix, rows=rows):
        (r,) = [r for r in rows if r["target"].startswith(prefix)]
        return r

    vs = find("speed vs PyTorch, every cell")
    assert vs["verdict"] == "met" and "1.50x (8x64x112x112 NHWC backward)" in vs["measured"]
    gm = find("speed vs PyTorch, geometric mean")
    assert gm["measured"] == f"{(3.0 * 1.5 * 4.0 * 1 / 1.5e-6 * 1 / 4.5e-6 * 1 / 2e-6) ** (1 / 6):.2f}x"
    roof = find("roof fraction, cells")
    assert roof["verdict"] == "not met"
    assert roof["measured"].startswith("1 of 2 cells; worst 0.75 (8x64x112x112 NHWC backward")
    assert roof["reference"].endswith(f"8x64x112x112 NHWC backward {1.0 / 0.95 * 0.75:.2f}")
    planar = find("roof fraction, planar")
    assert planar["verdict"] == "met" and planar["measured"] == "25.7 MB training 1.35"
    tiny = find("(1,16,8,8)")
    assert tiny["verdict"] == "not met" and tiny["measured"] == "1.50 / 4.50 / 2.00 us"
    two = find("2 threads over 1")
    assert two["verdict"] == "not met" and two["measured"] == "0.2 MB 1.50x"
    assert two["reference"] == "the roof's copy itself: 0.2 MB 1.20x"
    res = find("ResNet-50")
    assert res["verdict"] == "not met" and res["measured"].startswith("1.50x")
    assert "1.80x the roof's time from memory, 2.50x in cache" in res["reference"]
    # PyTorch at 1.9x a plain read: 2x asks cbn (1.3x the read) for 0.95x the read
    assert ("PyTorch takes 1.90x the time of only reading the inputs, so 2x would ask cbn "
            "(now 1.30x) for 0.95x it") in res["reference"]
    peak = find("peak allocation")
    assert peak["verdict"] == "not met" and "12289 bytes" in peak["measured"]
    f16 = find("float16")
    assert f16["verdict"] == "not met"
    assert f16["measured"] == "beyond the caches 0.90, evicted first 1.10, in cache 1.60"
    assert "1.50x" in f16["reference"]
    # a target the record meets: within the limits
    cells[0]["peak_alloc_bytes"] = 64 * 64 * 2 + 4096
    assert find("peak allocation", run.targets(record))["verdict"] == "met"
    md = run.targets_markdown(run.targets(record)).splitlines()
    assert md[0].startswith("| target | asked | measured | verdict |") and len(md) == 11


AB = BENCH.parent / "ab.py"


def test_ab_smoke():
    """bench/ab.py alternates a kernel setting in one process: one line per cell and
    thread count, a median per value and each value's ratio to the first."""
    res = subprocess.run([sys.executable, str(AB), "table_shift", "None,64,None",
                          "8x16:NC:training", "2x8x4x4:NHWC:backward:float64",
                          "--threads", "1", "--rounds", "1", "--budget", "0.0005"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if "ratio" in ln]
    assert [ln.split()[0] for ln in lines] == ["8x16:NC:training", "2x8x4x4:NHWC:backward:float64"]
    for ln in lines:
        assert "None=" in ln and "64=" in ln
        assert len(ln.split("ratio")[1].split()) == 2         # 64 and None over None


def test_ab_restores_the_setting_and_rejects_bad_input(capsys):
    sys.path.insert(0, str(BENCH.parent))
    try:
        import ab
    finally:
        sys.path.pop(0)
    from cbn import _dispatch
    before = _dispatch.kernels.table_shift()
    rows = ab.main(["table_shift", "None,128", "4x8:NC:inference", "--threads", "1",
                    "--rounds", "1", "--budget", "0.0005"])
    assert _dispatch.kernels.table_shift() == before
    assert [(r[0], r[1], len(r[2])) for r in rows] == [("4x8:NC:inference", 1, 2)]
    assert all(t > 0 for t in rows[0][2])
    for argv, msg in ((["nothing", "None,1", "4x8:NC:training"], "no such setter"),
                      (["llc_bytes", "None,1", "4x8:NC:training"], "does not take"),
                      (["flags", "None,1", "4x8:NC:training"], "is not a setting"),
                      (["table_shift", "None", "4x8:NC:training"], "two or more values"),
                      (["table_shift", "None,'big'", "4x8:NC:training"], "does not take 'big'"),
                      (["table_shift", "None,1", "4x8x2x2:NC:training"], "2-D shapes"),
                      (["table_shift", "None,1", "4x8:NC:forward"], "op 'forward'"),
                      (["table_shift", "None,1", "4x8:NHWC:training"], "2-D shapes"),
                      (["table_shift", "None,1", "4x8:NC:training:int8"], "dtype 'int8'"),
                      (["table_shift", "None,1", "4x8:NC"], "SHAPE:LAYOUT:OP")):
        with pytest.raises(SystemExit) as e:
            ab.main(argv)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err
    assert _dispatch.kernels.table_shift() == before
