"""python -m cbn, show_config, the public names, and the docstring examples."""

import doctest
import pathlib
import re
import subprocess
import sys

import pytest

import cbn


def test_main_runs():
    res = subprocess.run([sys.executable, "-m", "cbn", "--shape", "2,3,4,4", "--repeats", "1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "openmp" in out and "simd" in out
    for layout in ("NCHW", "NHWC"):
        for op in ("training", "inference"):
            assert any(line.startswith(layout) and op in line for line in out.splitlines())


def test_show_config(capsys):
    cfg = cbn.show_config()
    printed = capsys.readouterr().out
    for key in ("version", "openmp", "openmp_runtime", "threads", "compiler", "flags", "simd"):
        assert key in cfg and key in printed
    assert cfg["version"] == cbn.__version__
    assert cfg["threads"] == cbn.get_num_threads()
    assert "-march=native" not in cfg["flags"]
    assert cbn.show_config(print_out=False) == cfg
    assert capsys.readouterr().out == ""


def test_public_names():
    assert sorted(cbn.__all__) == sorted([
        "BatchNorm", "batch_norm", "batch_norm_backward", "batch_stats", "fold", "fold_into",
        "merge_moments", "moments", "scale_shift", "get_num_threads", "set_num_threads",
        "show_config"])
    for name in cbn.__all__:
        assert getattr(cbn, name).__doc__


@pytest.mark.parametrize("module", ["cbn._api", "cbn._fold", "cbn.layers", "cbn.dask"])
def test_docstring_examples(module):
    if module == "cbn.dask":
        pytest.importorskip("dask")
    mod = __import__(module, fromlist=["_"])
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 3 and res.failed == 0


README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("k", range(len(BLOCKS)))
def test_readme_examples_run(k, tmp_path, monkeypatch):
    """Every Python example of the README runs as written (in a scratch directory)."""
    code = BLOCKS[k]
    for optional in ("onnx", "dask"):
        if re.search(rf"^import .*\b{optional}\b", code, re.M):
            pytest.importorskip(optional)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md block {k}", "exec"), {})


def test_readme_has_examples():
    assert len(BLOCKS) >= 4
