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
    assert record["machine"]["cbn"]["version"]


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
