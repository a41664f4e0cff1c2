"""Writes an ONNX MLP with a symbolic batch axis (MatMul+Add+Relu layers, Softmax head)
for the serving benchmark: make-onnx-mlp.py PATH INPUTS HIDDEN LAYERS OUTPUTS.
Needs the `onnx` package (the interop venv has it)."""
import sys

import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper, save

path, inputs, hidden, layers, outputs = sys.argv[1], *map(int, sys.argv[2:6])
rng = np.random.default_rng(5)
widths = [inputs] + [hidden] * layers + [outputs]
nodes, weights, last = [], [], "input"
for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
    weights += [numpy_helper.from_array((rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32), f"W{i}"),
                numpy_helper.from_array(np.zeros(fan_out, dtype=np.float32), f"B{i}")]
    nodes += [helper.make_node("MatMul", [last, f"W{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"B{i}"], [f"z{i}"])]
    last = f"z{i}"
    if i < layers:
        nodes.append(helper.make_node("Relu", [last], [f"a{i}"]))
        last = f"a{i}"
nodes.append(helper.make_node("Softmax", [last], ["probabilities"], axis=1))
graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", inputs])],
                          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", outputs])],
                          initializer=weights)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
checker.check_model(model)
save(model, path)
