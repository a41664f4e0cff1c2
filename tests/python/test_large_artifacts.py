"""Large-model paths as a user meets them: an ONNX graph saved with external data (its
tensors in a side file, as onnx.save_model(save_as_external_data=True) writes it) is
imported as one version and served; a graph imported with --skip-validation gets its
signature from the worker's load; a graph whose data file is missing is refused naming
it; `--format json` prints progress events; `models download` writes a verified file."""
import hashlib
import json
import time

import numpy as np
import tritonclient.grpc as grpcclient


def write_external_mlp(folder, name, data_file="weights.bin"):
    """Two chained 64x64 MatMuls whose weights live in `data_file` beside the graph."""
    from onnx import TensorProto, helper, numpy_helper, checker, save_model

    rng = np.random.default_rng(7)
    w1 = rng.normal(size=(64, 64)).astype(np.float32) / 8
    w2 = rng.normal(size=(64, 64)).astype(np.float32) / 8
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    path = folder / name
    save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
               location=data_file, size_threshold=0)
    return path, w1, w2


def wait_ready(client, model):
    deadline = time.time() + 60
    while not client.is_model_ready(model):
        assert time.time() < deadline, f"{model} never became ready"
        time.sleep(0.1)


def infer(client, model, x):
    tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer(model, [tensor]).as_numpy("y")


def test_external_data_graph_is_imported_as_one_version_and_served(cluster, cli, tmp_path):
    router, _ = cluster
    path, w1, w2 = write_external_mlp(tmp_path, "external.onnx")
    assert (tmp_path / "weights.bin").stat().st_size == 2 * 64 * 64 * 4
    imported = cli("models", "import", "external-mlp", str(path), "--format", "json")
    events = [json.loads(line) for line in imported.stdout.splitlines()]
    assert events[0]["event"] == "started" and events[0]["action"] == "import"
    assert [e["event"] for e in events][-2:] == ["finished", "imported"], events
    assert events[-2]["bytes"] == events[-1]["size_bytes"] == events[0]["total_bytes"], events
    versions = cli("models", "versions", "external-mlp").stdout
    assert "onnx_archive" in versions, versions

    cli("deploy", "external-mlp", "--version", "1")
    client = grpcclient.InferenceServerClient(router)
    wait_ready(client, "external-mlp")
    x = np.random.default_rng(3).normal(size=(5, 64)).astype(np.float32)
    np.testing.assert_allclose(infer(client, "external-mlp", x), np.maximum(x @ w1, 0) @ w2, rtol=1e-4, atol=1e-5)
    # The worker's load says what the archive's graph takes.
    meta = client.get_model_metadata("external-mlp", as_json=True)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "64"]}], meta

    # The archive downloads as it was uploaded, verified, with progress events.
    target = tmp_path / "back.tar"
    downloaded = cli("models", "download", "external-mlp", "1", "--output", str(target), "--format", "json")
    last = json.loads(downloaded.stdout.splitlines()[-1])
    assert last["event"] == "downloaded" and last["size_bytes"] == target.stat().st_size
    assert hashlib.sha256(target.read_bytes()).hexdigest() == last["sha256"]


def test_a_missing_data_file_is_named(cli, tmp_path):
    path, _, _ = write_external_mlp(tmp_path, "orphan.onnx", data_file="gone.bin")
    (tmp_path / "gone.bin").unlink()
    failed = cli("models", "import", "orphan", str(path), check=False)
    assert failed.returncode != 0
    assert '"gone.bin"' in failed.stderr and "cannot be read" in failed.stderr, failed.stderr


def test_skip_validation_defers_the_check_to_the_worker(cluster, cli, tmp_path):
    from onnx import TensorProto, helper, save

    router, _ = cluster
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])], "neg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "neg.onnx"
    save(model, str(path))
    imported = cli("models", "import", "unchecked-neg", str(path), "--skip-validation")
    assert "a worker checks it when it loads" in imported.stdout, imported.stdout
    cli("deploy", "unchecked-neg", "--version", "1")
    client = grpcclient.InferenceServerClient(router)
    wait_ready(client, "unchecked-neg")
    x = np.array([[1.5, -2.0]], dtype=np.float32)
    tensor = grpcclient.InferInput("x", [1, 2], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("unchecked-neg", [tensor]).as_numpy("y"), -x)
    meta = client.get_model_metadata("unchecked-neg", as_json=True)
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": ["-1", "2"]}], meta

