"""The benchmark suite runs (a smoke run on one tiny shape; timings are not checked here)."""

import json
import pathlib
import subprocess
import sys

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
