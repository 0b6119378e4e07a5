"""cbn next to the other OpenMP users of a process: PyTorch and scikit-learn.

Each wheel brings its own OpenMP runtime (cbn's vendored libgomp, torch's, and
scikit-learn's); these tests load them into one process in several orders and
use all three, in subprocesses so that each starts clean.
"""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

WORK = textwrap.dedent("""
    import json, sys
    for name in sys.argv[1].split(","):
        __import__(name)
    import numpy as np, torch, cbn
    from sklearn.cluster import KMeans
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    pts = rng.standard_normal((2000, 4))
    KMeans(n_clusters=3, n_init=2, random_state=0).fit(pts)              # OpenMP in sklearn
    HistGradientBoostingClassifier(max_iter=5).fit(pts, pts[:, 0] > 0)
    torch.set_num_threads(2)
    x = rng.standard_normal((16, 32, 24, 24)).astype(np.float32)
    ty = torch.nn.functional.batch_norm(torch.from_numpy(x), None, None, training=True)
    y = cbn.batch_norm(x, training=True, n_threads=2)                      # cbn's team
    y2 = cbn.batch_norm(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=True,
                        axis=-1, n_threads=2)
    err = float(np.abs(y - ty.numpy()).max())
    err2 = float(np.abs(y2.transpose(0, 3, 1, 2) - y).max())
    cfg = cbn.show_config(print_out=False)
    print(json.dumps({"err": err, "err2": err2, "runtimes": cfg["openmp_runtimes_loaded"],
                      "openmp": cfg["openmp"]}))
""")


@pytest.mark.parametrize("order", ["cbn,torch,sklearn", "torch,sklearn,cbn", "sklearn,cbn,torch"])
def test_with_torch_and_sklearn_in_one_process(order):
    res = subprocess.run([sys.executable, "-c", WORK, order], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    import json
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["err"] < 1e-5 and out["err2"] < 1e-5, out
    if out["openmp"] and out["runtimes"] is not None:
        assert out["runtimes"], "no OpenMP runtime reported although cbn uses one"


def test_threadpoolctl_limits_cbn():
    """threadpoolctl (what scikit-learn uses) caps cbn's default threads too."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import cbn
    before = cbn.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert cbn.get_num_threads() == 1
    assert cbn.get_num_threads() == before
    if not cbn.show_config(print_out=False)["openmp"]:
        assert before == 1      # a serial build always runs on one thread
