"""examples/seed_claims.py runs (one seed, a few epochs: the full run is in the README)."""

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("sklearn")
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "seed_claims.py"


def test_seed_claims_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("seed_claims", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    summary = mod.main(["--seeds", "1", "--epochs", "3", "--out", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert "batch norm converges faster" in out and ("HOLDS" in out)
    assert len(summary) == 6
    for (setting, bn), s in summary.items():
        assert 0.0 <= s["final"] <= 1.0
    # the batch-norm network learns something in 3 epochs in every setting
    assert all(summary[(s, True)]["final"] > 0.8 for s in mod.SETTINGS)
    _, accs = mod.train(0, "normal", True, 2)
    assert accs.shape == (2,) and np.isfinite(accs).all()
