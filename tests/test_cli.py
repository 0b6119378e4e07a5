"""python -m cbn, show_config, the public names, and the docstring examples."""

import doctest
import subprocess
import sys

import cbn
import cbn._api


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
        "batch_norm", "batch_norm_backward", "batch_stats", "fold", "scale_shift",
        "get_num_threads", "set_num_threads", "show_config"])
    for name in cbn.__all__:
        assert getattr(cbn, name).__doc__


def test_docstring_examples():
    res = doctest.testmod(cbn._api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 10 and res.failed == 0


def test_readme_quickstart_runs():
    """The README's Python example runs as written."""
    import pathlib
    import re
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
