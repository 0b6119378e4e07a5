"""BatchNormalization in ONNX models: read its parameters, fold it into the Conv before it.

Needs the ``onnx`` package (``pip install onnx``); cbn itself does not.

Exported graphs hold parameters as initializers, as ``Constant`` nodes, or as
small constant subgraphs (``ConstantOfShape`` of a shape initializer, a
``Reshape`` or ``Cast`` of constants, ...).  Every value that depends only on
such constants is evaluated here with ONNX's reference implementation of the op,
so both functions see through all of them.  Initializers that are also listed
as graph inputs (models with IR version < 4 do that for every weight) are taken
as constants, as the runtimes do unless the caller overrides them.
"""

import numpy as np

try:
    import onnx
    from onnx import helper, numpy_helper
except ImportError as e:  # pragma: no cover - exercised only without onnx
    raise ImportError("cbn.onnx needs the onnx package: pip install onnx") from e

from cbn._fold import fold_into

__all__ = ["batch_norm_params", "fold_batchnorm"]

# Ops whose output is not a function of their inputs alone.
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                 "Multinomial", "Bernoulli", "If", "Loop", "Scan"}


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _evaluate(node, inputs, opsets):
    """Run one node on constant inputs with ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator
    ins = [helper.make_tensor_value_info(f"i{k}", onnx.TensorProto.UNDEFINED, None)
           for k in range(len(inputs))]
    outs = [helper.make_tensor_value_info(f"o{k}", onnx.TensorProto.UNDEFINED, None)
            for k in range(len(node.output))]
    one = helper.make_node(node.op_type, [f"i{k}" if name else "" for k, name in
                                          enumerate(node.input)],
                           [o.name for o in outs], domain=node.domain)
    one.attribute.extend(node.attribute)
    graph = helper.make_graph([one], "const", [i for i, name in zip(ins, node.input) if name],
                              outs)
    model = helper.make_model(graph, opset_imports=opsets)
    feeds = {f"i{k}": v for k, (v, name) in enumerate(zip(inputs, node.input)) if name}
    return ReferenceEvaluator(model).run(None, feeds)


def constant_values(graph, opsets):
    """{name: ndarray} for every value of `graph` computable from constants alone."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            attr = node.attribute[0]
            if attr.name == "value":
                values[node.output[0]] = numpy_helper.to_array(attr.t)
            else:   # value_float(s), value_int(s), ...
                values[node.output[0]] = np.array(helper.get_attribute_value(attr))
            continue
        if node.op_type in _NOT_FOLDABLE or any(a.type == onnx.AttributeProto.GRAPH
                                                 for a in node.attribute):
            continue
        if not node.input or not all(name == "" or name in values for name in node.input):
            continue
        try:
            outs = _evaluate(node, [values.get(name) for name in node.input], opsets)
        except Exception:   # an op the reference evaluator lacks: leave it to the runtime
            continue
        for name, v in zip(node.output, outs):
            if name:
                values[name] = np.asarray(v)
    return values


def batch_norm_params(model):
    """The parameters of every BatchNormalization node of `model`, ready for cbn.

    Returns
    -------
    list of dict
        One per node, in graph order: ``name``, ``input``, ``output`` (value
        names), ``epsilon``, ``momentum``, ``training_mode`` and the arrays
        ``scale``, ``bias``, ``mean``, ``var`` (None for one that is not
        constant).  ``cbn.batch_norm(x, p["mean"], p["var"], p["scale"],
        p["bias"], eps=p["epsilon"])`` is the node in inference mode.
    """
    graph = model.graph
    consts = constant_values(graph, model.opset_import)
    out = []
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            continue
        p = {"name": node.name, "input": node.input[0], "output": node.output[0],
             "epsilon": float(_attr(node, "epsilon", 1e-5)),
             "momentum": float(_attr(node, "momentum", 0.9)),
             "training_mode": int(_attr(node, "training_mode", 0))}
        for key, name in zip(("scale", "bias", "mean", "var"), node.input[1:5]):
            p[key] = consts.get(name)
        out.append(p)
    return out


def fold_batchnorm(model):
    """A copy of `model` with each Conv -> BatchNormalization pair folded into the Conv.

    A BatchNormalization is folded when it runs in inference mode, its input
    comes from a Conv (or a ConvTranspose with group 1) whose output feeds
    nothing else, and all the weights involved are constant.  Other
    BatchNormalization nodes are left as they are.  The weights are computed in
    float64 by :func:`cbn.fold_into` and stored in the original dtype.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    consts = constant_values(graph, m.opset_import)
    producer = {o: n for n in graph.node for o in n.output}
    uses = {}
    for n in graph.node:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    initializers_before = {t.name for t in graph.initializer}
    taken = {t.name for t in graph.initializer} | set(producer) | {i.name for i in graph.input}

    def fresh(base):
        k = 0
        while f"{base}_bnfold{k}" in taken:
            k += 1
        taken.add(f"{base}_bnfold{k}")
        return f"{base}_bnfold{k}"

    removed = []
    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization" or int(_attr(bn, "training_mode", 0)):
            continue
        if any(name and (uses.get(name) or name in graph_outputs) for name in bn.output[1:]):
            continue    # training outputs are used
        x = bn.input[0]
        conv = producer.get(x)
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose"):
            continue
        if uses.get(x, 0) != 1 or x in graph_outputs:
            continue
        if conv.op_type == "ConvTranspose" and int(_attr(conv, "group", 1)) != 1:
            continue
        names = {"w": conv.input[1], "b": conv.input[2] if len(conv.input) > 2 else ""}
        params = [consts.get(name) for name in bn.input[1:5]]
        w = consts.get(names["w"])
        b = consts.get(names["b"]) if names["b"] else None
        if w is None or (names["b"] and b is None) or any(p is None for p in params):
            continue
        scale, beta, mean, var = params
        new_w, new_b = fold_into(w, b, mean, var, scale, beta,
                                 eps=float(_attr(bn, "epsilon", 1e-5)),
                                 axis=1 if conv.op_type == "ConvTranspose" else 0)
        if b is None:
            new_b = new_b.astype(w.dtype)
        w_name, b_name = fresh(names["w"] or "W"), fresh(names["b"] or "B")
        graph.initializer.extend([numpy_helper.from_array(new_w, w_name),
                                  numpy_helper.from_array(new_b, b_name)])
        conv.input[1] = w_name
        if len(conv.input) > 2:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = bn.output[0]
        producer[bn.output[0]] = conv
        removed.append(bn)
    for bn in removed:
        graph.node.remove(bn)
    if m.ir_version < 4:    # IR < 4: every initializer is also declared as a graph input
        declared = {i.name for i in graph.input}
        graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                           for t in graph.initializer if t.name not in declared)
    _prune(graph, initializers_before)
    onnx.checker.check_model(m)
    return m


def _prune(graph, initializers_before):
    """Drop nodes and initializers whose outputs nothing uses any more (the old
    weights and the constant subgraphs that made them), the graph inputs that only
    declared a dropped initializer, and stale value_info."""
    while True:
        needed = {o.name for o in graph.output}
        for n in graph.node:
            needed.update(n.input)
        dead = [n for n in graph.node
                if n.op_type not in _NOT_FOLDABLE and not any(o in needed for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    keep = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    kept = {t.name for t in keep}
    inputs = [i for i in graph.input if i.name not in initializers_before or i.name in kept]
    del graph.input[:]
    graph.input.extend(inputs)
    known = {o for n in graph.node for o in n.output} | kept | {i.name for i in graph.input}
    vi = [v for v in graph.value_info if v.name in known]
    del graph.value_info[:]
    graph.value_info.extend(vi)
