"""Interop: the Triton Python client (tritonclient[grpc]) against the modelplane router.

Starts `modelplane up` on free ports in a temporary directory, trains and deploys a
linear model through the CLI, then checks health, readiness, metadata and inference with
raw and with typed contents against a numpy computation from the artifact file itself.
"""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

BIN = os.environ.get("MODELPLANE_BIN", "target/debug/modelplane")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def read_safetensors(path):
    """Tensors and metadata of a safetensors file, parsed by hand with numpy."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    metadata = header.pop("__metadata__", {})
    body = data[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32"
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"])
    return tensors, metadata


ONNX_RNG = np.random.default_rng(0)
W1 = ONNX_RNG.normal(size=(4, 8)).astype(np.float32)
B1 = ONNX_RNG.normal(size=(8,)).astype(np.float32)
W2 = ONNX_RNG.normal(size=(8, 3)).astype(np.float32)
B2 = ONNX_RNG.normal(size=(3,)).astype(np.float32)


def write_onnx_classifier(path):
    """Gemm -> Relu -> Gemm -> Softmax, batch dimension left symbolic, built with onnx."""
    from onnx import TensorProto, helper, numpy_helper, checker, save

    nodes = [
        helper.make_node("Gemm", ["features", "W1", "B1"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["activated"]),
        helper.make_node("Gemm", ["activated", "W2", "B2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(a, n) for a, n in [(W1, "W1"), (B1, "B1"), (W2, "W2"), (B2, "B2")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, path)


@pytest.fixture(scope="module")
def cluster():
    work = tempfile.mkdtemp(prefix="modelplane-interop-")
    log = open(os.path.join(work, "up.log"), "w")
    proc = subprocess.Popen(
        [BIN, "up", "--data-dir", os.path.join(work, "data"), "--grpc-port", "0",
         "--registry-port", "0", "--trainer-port", "0", "--worker-port", "0"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    addrs = {}
    deadline = time.time() + 60
    while len(addrs) < 4 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("modelplane: ") and " listening on " in line:
            role, addr = line[len("modelplane: "):].strip().split(" listening on ")
            addrs[role] = addr
    assert len(addrs) == 4, f"modelplane up did not start: {addrs}"
    env = dict(os.environ, MODELPLANE_REGISTRY=addrs["registry"], MODELPLANE_TRAINER=addrs["trainer"],
               MODELPLANE_ROUTER=addrs["router"])

    def cli(*args):
        subprocess.run([BIN, *args], check=True, env=env, cwd=work, stdout=subprocess.PIPE)

    subprocess.run([sys.executable, os.path.join(REPO, "examples", "make-data.py"), work], check=True,
                   stdout=subprocess.PIPE)
    cli("datasets", "upload", "houses.csv")
    cli("train", "houses", "--dataset", "houses", "--target", "price", "--kind", "linear", "--epochs", "30")
    cli("alias", "set", "houses", "production", "1")
    cli("deploy", "houses", "--alias", "production")
    artifacts = glob.glob(os.path.join(work, "data", "blobs", "artifacts", "*"))
    assert len(artifacts) == 1, artifacts
    cli("datasets", "upload", "tickets.csv")
    cli("train", "tickets", "--dataset", "tickets", "--target", "topic", "--kind", "softmax",
        "--param", "text_column=text")
    cli("deploy", "tickets", "--version", "1")
    onnx_path = os.path.join(work, "classifier.onnx")
    write_onnx_classifier(onnx_path)
    cli("models", "import", "onnx-classifier", onnx_path)
    cli("deploy", "onnx-classifier", "--version", "1")
    yield addrs["router"], artifacts[0]
    proc.terminate()
    assert proc.wait(timeout=20) == 0, "modelplane up did not exit cleanly on SIGTERM"


ROWS = np.array([[120, 3, 10], [60, 1, 45], [200, 5, 2.5]], dtype=np.float32)


def expected(artifact):
    """The linear model's predictions, from the artifact's own tensors."""
    t, metadata = read_safetensors(artifact)
    manifest = json.loads(metadata["modelplane.manifest"])
    assert manifest["head"] == "identity" and manifest["activations"] == ["identity"]
    z = ((ROWS - t["scaler.mean"]) / t["scaler.scale"]) @ t["layers.0.weight"] + t["layers.0.bias"]
    return z.astype(np.float32)


def test_health_and_metadata(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("houses")
    assert client.is_model_ready("houses", "production")
    assert client.is_model_ready("houses", "1")
    meta = client.get_model_metadata("houses", as_json=True)
    assert meta["name"] == "houses"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "3"]}]
    assert meta["outputs"][0]["name"] == "predictions"
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "modelplane"


def test_infer_raw_contents(cluster):
    router, artifact = cluster
    client = grpcclient.InferenceServerClient(router)
    x = grpcclient.InferInput("input", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)  # tritonclient sends raw_input_contents
    result = client.infer("houses", [x], model_version="production",
                          outputs=[grpcclient.InferRequestedOutput("predictions")])
    got = result.as_numpy("predictions")
    assert got.shape == (3, 1)
    np.testing.assert_allclose(got, expected(artifact), rtol=1e-4)
    assert result.get_response().model_version == "1"


def test_wider_types_convert_when_exact(cluster):
    router, artifact = cluster
    client = grpcclient.InferenceServerClient(router)
    for dtype, array in [("FP64", ROWS.astype(np.float64)), ("INT64", np.array([[120, 3, 10]], dtype=np.int64)),
                         ("INT32", np.array([[120, 3, 10]], dtype=np.int32))]:
        x = grpcclient.InferInput("input", list(array.shape), dtype)
        x.set_data_from_numpy(array)
        got = client.infer("houses", [x]).as_numpy("predictions")
        np.testing.assert_allclose(got, expected(artifact)[: len(array)], rtol=1e-4)


def test_infer_typed_contents(cluster):
    router, artifact = cluster
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(router))
    request = service_pb2.ModelInferRequest(model_name="houses", model_version="1")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(ROWS.shape))
    tensor.contents.fp32_contents.extend(ROWS.flatten().tolist())
    response = stub.ModelInfer(request)
    assert list(response.outputs[0].shape) == [3, 1]
    got = np.array(response.outputs[0].contents.fp32_contents, dtype=np.float32).reshape(3, 1)
    np.testing.assert_allclose(got, expected(artifact), rtol=1e-4)


def test_text_model_takes_bytes_and_answers_labels(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    meta = client.get_model_metadata("tickets", as_json=True)
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": ["-1"]}]
    texts = np.array([b"I was charged twice for one invoice", b"the courier lost my parcel",
                      "my password no longer works \u2013 locked out".encode()], dtype=np.object_)
    x = grpcclient.InferInput("text", [3], "BYTES")
    x.set_data_from_numpy(texts)
    result = client.infer("tickets", [x])
    assert list(result.as_numpy("label")) == [b"billing", b"delivery", b"account"]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_imported_onnx_model_matches_numpy(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    meta = client.get_model_metadata("onnx-classifier", as_json=True)
    assert meta["platform"] == "tract_onnx"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert meta["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": ["-1", "3"]}]
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    tensor = grpcclient.InferInput("features", [5, 4], "FP32")
    tensor.set_data_from_numpy(x)
    got = client.infer("onnx-classifier", [tensor]).as_numpy("probs")
    logits = np.maximum(x @ W1 + B1, 0) @ W2 + B2
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    wrong = grpcclient.InferInput("features", [5, 3], "FP32")
    wrong.set_data_from_numpy(x[:, :3].copy())
    with pytest.raises(grpcclient.InferenceServerException) as err:
        client.infer("onnx-classifier", [wrong])
    assert "INVALID_ARGUMENT" in str(err.value.status()) and "[-1, 4]" in err.value.message()


def test_errors_are_precise(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    x = grpcclient.InferInput("input", [1, 3], "BYTES")
    x.set_data_from_numpy(np.array([[b"a", b"b", b"c"]], dtype=np.object_))
    with pytest.raises(grpcclient.InferenceServerException) as err:
        client.infer("houses", [x])
    assert "INVALID_ARGUMENT" in str(err.value.status()) and "expected FP32" in err.value.message()
    inexact = grpcclient.InferInput("input", [1, 3], "FP64")
    inexact.set_data_from_numpy(np.full((1, 3), 0.1, dtype=np.float64))
    with pytest.raises(grpcclient.InferenceServerException) as err:
        client.infer("houses", [inexact])
    assert "cannot be represented exactly in FP32" in err.value.message()
    y = grpcclient.InferInput("input", [1, 3], "FP32")
    y.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(grpcclient.InferenceServerException) as err:
        client.infer("no-such-model", [y])
    assert "NOT_FOUND" in str(err.value.status())
