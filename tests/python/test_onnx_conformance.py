"""ONNX graphs as scikit-learn, XGBoost and LightGBM users export them (onnx_matrix.py),
imported into the running cluster and served: every answer equals onnxruntime's on the
held-out rows — labels exactly, probabilities and regression outputs within 1e-5
(relative for regression values, whose FP32 spacing exceeds 1e-5 past 128). Graphs with
an operator modelplane cannot run are refused at import, naming it."""
import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as grpcclient

import onnx_matrix

CASES = {case.name: case for case in onnx_matrix.cases()}


# Why a case did not import or deploy, by name, filled in by `imported`.
FAILED = {}


@pytest.fixture(scope="module")
def imported(cluster, cli, tmp_path_factory):
    """Imports and deploys every case (each case's test reports its own failure)."""
    folder = tmp_path_factory.mktemp("conformance")
    for name, case in CASES.items():
        path = folder / f"{name}.onnx"
        path.write_bytes(case.graph)
        for step in (("models", "import", name, str(path)), ("deploy", name, "--version", "1")):
            done = cli(*step, check=False)
            if done.returncode != 0:
                FAILED[name] = f"{' '.join(step[:2])}: {done.stderr}"
                break
    return cluster[0]


def infer(router, name, inputs):
    tensors = []
    for input_name, values in inputs.items():
        tensor = grpcclient.InferInput(input_name, list(values.shape), "BYTES" if values.dtype == object else "FP32")
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    return grpcclient.InferenceServerClient(router).infer(name, tensors)


@pytest.mark.parametrize("name", sorted(CASES))
def test_answers_equal_onnxruntime(imported, name):
    assert name not in FAILED, FAILED.get(name)
    case = CASES[name]
    session = onnxruntime.InferenceSession(case.graph, providers=["CPUExecutionProvider"])
    wanted = session.run(None, case.inputs)
    result = infer(imported, name, case.inputs)
    for output, want in zip(session.get_outputs(), wanted):
        got = result.as_numpy(output.name)
        assert got is not None, f"{name} answered no {output.name}"
        if want.dtype.kind in "iu":
            np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=f"{name}: {output.name}")
        else:
            assert got.dtype == want.dtype, (name, output.name, got.dtype)
            np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}: {output.name}")


def test_a_row_at_a_time_answers_as_the_batch(imported):
    # Single rows merge into the worker's batches; the answers must not depend on it.
    case = CASES["gradient-boosting-binary"]
    rows = case.inputs["X"][:5]
    batch = infer(imported, case.name, {"X": rows}).as_numpy("probabilities")
    for i in range(len(rows)):
        alone = infer(imported, case.name, {"X": rows[i:i + 1]}).as_numpy("probabilities")
        np.testing.assert_array_equal(alone[0], batch[i])


def test_graphs_with_zipmap_or_an_unknown_operator_are_refused_at_import(imported, cli, tmp_path):
    from onnx import TensorProto, helper
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    zipmap = to_onnx(DecisionTreeClassifier(max_depth=2).fit(X, y), X[:1].astype(np.float32))
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(zipmap.SerializeToString())
    refused = cli("models", "import", "zipmap", str(path), check=False)
    assert refused.returncode != 0
    assert "ZipMap" in refused.stderr and "'zipmap': False" in refused.stderr, refused.stderr

    node = helper.make_node("FancyScaler", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    path.write_bytes(model.SerializeToString())
    refused = cli("models", "import", "custom", str(path), check=False)
    assert refused.returncode != 0
    assert "FancyScaler (domain com.example" in refused.stderr, refused.stderr
    assert "InvalidArgument" in refused.stderr, refused.stderr
