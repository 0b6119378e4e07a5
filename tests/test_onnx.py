"""cbn.onnx: BN parameters read through constant subgraphs, Conv+BN folded, checked with
ONNX Runtime on the real architectures that ship inside the onnx package."""

import os

import numpy as np
import pytest

import cbn
from conftest import assert_within

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cbn_onnx = pytest.importorskip("cbn.onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
# (model, BatchNormalization nodes before, after folding): DenseNet's pre-activation
# BNs follow a Concat, not a Conv, and stay.
MODELS = [("light_resnet50.onnx", 53, 0), ("light_shufflenet.onnx", 49, 0),
          ("light_inception_v2.onnx", 69, 0), ("light_densenet121.onnx", 121, 62)]


def _count(model, op="BatchNormalization"):
    return sum(n.op_type == op for n in model.graph.node)


def _data_input(model):
    inits = {t.name for t in model.graph.initializer}
    inp = [i for i in model.graph.input if i.name not in inits][0]
    return inp.name, [d.dim_value for d in inp.type.tensor_type.shape.dim]


def _run(model, x, extra_outputs=()):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra_outputs:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name, _ = _data_input(model)
    return sess.run(None, {name: x})


def _randomize(model, rng):
    """The same architecture with random weights (He-scaled) and BN statistics, all
    stored as initializers: the light models' constant-filled weights give flat outputs."""
    consts = cbn_onnx.constant_values(model.graph, model.opset_import)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    new = {}
    for node in m.graph.node:
        if node.op_type not in ("Conv", "BatchNormalization", "Gemm"):
            continue
        for k, name in enumerate(node.input[1:], start=1):
            if name not in consts or name in new:
                continue
            v = consts[name]
            if node.op_type == "BatchNormalization":
                r = (rng.uniform(0.5, 1.5, v.shape) if k in (1, 4) else
                     rng.standard_normal(v.shape) * 0.1)
            else:
                fan_in = max(1, int(np.prod(v.shape[1:])))
                r = rng.standard_normal(v.shape) * np.sqrt(2.0 / fan_in)
            new[name] = r.astype(v.dtype)
    for node in m.graph.node:
        for k, name in enumerate(node.input):
            if name in new:
                node.input[k] = name + "_random"
    m.graph.initializer.extend(numpy_helper.from_array(v, n + "_random") for n, v in new.items())
    if m.ir_version < 4:
        m.graph.input.extend(helper.make_tensor_value_info(n + "_random", TensorProto.FLOAT,
                                                           list(v.shape)) for n, v in new.items())
    return m


@pytest.mark.parametrize("name,before,after", MODELS)
def test_light_models_fold_with_the_same_outputs(name, before, after, rng):
    model = onnx.load(os.path.join(LIGHT, name))
    assert _count(model) == before
    folded = cbn_onnx.fold_batchnorm(model)
    assert _count(folded) == after
    assert _count(folded, "Conv") == _count(model, "Conv")
    onnx.checker.check_model(folded)
    _, shape = _data_input(model)
    x = rng.standard_normal(shape).astype(np.float32)
    # every folded BN's output (now produced by its Conv) and the model outputs
    kept = {n.output[0] for n in folded.graph.node if n.op_type == "BatchNormalization"}
    inner = [n.output[0] for n in model.graph.node
             if n.op_type == "BatchNormalization" and n.output[0] not in kept]
    a, b = _run(model, x, inner), _run(folded, x, inner)
    for p, q in zip(a, b):
        assert_within(q, p, 2e-5 * (np.abs(p) + np.abs(p).max()))
    # and with random weights, where the network's outputs are not flat
    rmodel = _randomize(model, rng)
    a, b = _run(rmodel, x), _run(cbn_onnx.fold_batchnorm(rmodel), x)
    assert np.std(a[0]) > 0
    for p, q in zip(a, b):
        assert_within(q, p, 1e-4 * (np.abs(p) + np.abs(p).max()))


def test_batch_norm_params_of_a_light_model():
    model = onnx.load(os.path.join(LIGHT, "light_resnet50.onnx"))
    params = cbn_onnx.batch_norm_params(model)
    assert len(params) == 53
    for p in params:
        C = p["scale"].shape[0]
        for k in ("scale", "bias", "mean", "var"):
            assert p[k] is not None and p[k].shape == (C,), (p["name"], k)
        assert p["training_mode"] == 0 and p["epsilon"] > 0


def _synthetic(rng, C=3):
    """Parameters as an initializer, a Constant node, a Reshape of a constant, and
    ConstantOfShape; a BN after a Relu; a Conv feeding two nodes; a ConvTranspose."""
    f32 = TensorProto.FLOAT
    w = rng.standard_normal((C, 2, 3, 3)).astype(np.float32) * 0.3
    scale = rng.uniform(0.5, 2, C).astype(np.float32)
    bias = rng.standard_normal(C).astype(np.float32)
    mean2d = rng.standard_normal((1, C)).astype(np.float32)
    var = rng.uniform(0.5, 2, C).astype(np.float32)
    wt = rng.standard_normal((C, C, 2, 2)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(mean2d, "mean2d"),
             numpy_helper.from_array(np.array([C], np.int64), "shapeC"),
             numpy_helper.from_array(var, "var"), numpy_helper.from_array(wt, "WT")]
    nodes = [
        helper.make_node("Constant", [], ["scale"], value=numpy_helper.from_array(scale)),
        helper.make_node("Constant", [], ["bias"], value=numpy_helper.from_array(bias)),
        helper.make_node("Reshape", ["mean2d", "shapeC"], ["mean"]),
        helper.make_node("ConstantOfShape", ["shapeC"], ["ones"],
                         value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("ConstantOfShape", ["shapeC"], ["zeros"],
                         value=numpy_helper.from_array(np.array([0.0], np.float32))),
        helper.make_node("Conv", ["x", "W"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "scale", "bias", "mean", "var"], ["b1"],
                         epsilon=1e-3),                                   # folded
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("BatchNormalization", ["r1", "ones", "zeros", "mean", "var"], ["b2"]),
        helper.make_node("Conv", ["b2", "W2"], ["c3"]),                   # W2 below
        helper.make_node("BatchNormalization", ["c3", "scale", "bias", "mean", "var"], ["b3"]),
        helper.make_node("Add", ["b3", "c3"], ["s3"]),                    # c3 used twice: kept
        helper.make_node("ConvTranspose", ["s3", "WT"], ["t4"]),
        helper.make_node("BatchNormalization", ["t4", "scale", "zeros", "mean", "var"], ["y"]),
    ]
    inits.append(numpy_helper.from_array(rng.standard_normal((C, C, 1, 1)).astype(np.float32), "W2"))
    graph = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("x", f32, [2, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", f32, [2, C, 7, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model, dict(scale=scale, bias=bias, mean=mean2d.ravel(), var=var)


def test_synthetic_graph(rng):
    model, p = _synthetic(rng)
    onnx.checker.check_model(model)
    params = cbn_onnx.batch_norm_params(model)
    assert [q["output"] for q in params] == ["b1", "b2", "b3", "y"]
    first = params[0]
    for k in ("scale", "bias", "mean", "var"):
        np.testing.assert_array_equal(first[k], p[k])
    assert first["epsilon"] == pytest.approx(1e-3)
    np.testing.assert_array_equal(params[1]["scale"], np.ones(3, np.float32))
    folded = cbn_onnx.fold_batchnorm(model)
    # b1 (after a Conv) and y (after a ConvTranspose) fold; b2 follows a Relu, b3's
    # Conv output also feeds the Add
    assert [n.output[0] for n in folded.graph.node if n.op_type == "BatchNormalization"] == ["b2", "b3"]
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    a, b = _run(model, x, ["b1", "b3"]), _run(folded, x, ["b1", "b3"])
    for q, r in zip(a, b):
        assert_within(r, q, 1e-5 * (np.abs(q) + np.abs(q).max()))
    # cbn with the parameters batch_norm_params read is the node itself
    c1 = _run(model, x, ["c1"])[-1]
    want = _run(model, x, ["b1"])[-1]
    got = cbn.batch_norm(c1, first["mean"], first["var"], first["scale"], first["bias"],
                         eps=first["epsilon"])
    assert_within(got, want, 1e-5 * (np.abs(want) + np.abs(want).max()))
    model.graph.node[6].attribute.append(helper.make_attribute("training_mode", 1))
    assert _count(cbn_onnx.fold_batchnorm(model)) == 3     # a training-mode BN stays
