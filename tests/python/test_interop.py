"""Interop: the Triton Python client (tritonclient[grpc]) against the modelplane router:
health, readiness, metadata and inference with raw and typed contents, checked against a
numpy computation from the artifact file itself (the cluster is in conftest.py).
"""
import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import ROWS, TYPED_W, W1, B1, W2, B2, expected


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
    row = [[120, 3, 10]]
    for dtype, array in [("FP64", ROWS.astype(np.float64)), ("INT64", np.array(row, dtype=np.int64)),
                         ("INT32", np.array(row, dtype=np.int32)), ("INT16", np.array(row, dtype=np.int16)),
                         ("UINT8", np.array(row, dtype=np.uint8)), ("UINT64", np.array(row, dtype=np.uint64)),
                         ("FP16", np.array(row, dtype=np.float16))]:
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


def test_onnx_model_with_integer_and_bool_tensors(cluster, cli, tmp_path):
    """INT64 in; FP32, INT64 and BOOL out. Other integer types convert to INT64 when
    exact; a fractional value is refused."""
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    meta = client.get_model_metadata("onnx-typed", as_json=True)
    assert meta["inputs"] == [{"name": "ids", "datatype": "INT64", "shape": ["-1", "3"]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("scores", "FP32"), ("label", "INT64"), ("positive", "BOOL")]
    ids = np.array([[1, 2, 3], [4, 0, 1], [0, 0, 2]], dtype=np.int64)
    scores = ids.astype(np.float32) @ TYPED_W
    for dtype, datatype in [(np.int64, "INT64"), (np.int32, "INT32"), (np.uint8, "UINT8")]:
        tensor = grpcclient.InferInput("ids", list(ids.shape), datatype)
        tensor.set_data_from_numpy(ids.astype(dtype))
        result = client.infer("onnx-typed", [tensor])
        np.testing.assert_allclose(result.as_numpy("scores"), scores, rtol=1e-6)
        assert result.as_numpy("label").dtype == np.int64
        assert result.as_numpy("label").tolist() == scores.argmax(axis=1).tolist(), datatype
        assert result.as_numpy("positive").tolist() == (scores > 0).tolist(), datatype
    fractional = grpcclient.InferInput("ids", [1, 3], "FP32")
    fractional.set_data_from_numpy(np.array([[1.0, 2.5, 3.0]], dtype=np.float32))
    with pytest.raises(grpcclient.InferenceServerException) as err:
        client.infer("onnx-typed", [fractional])
    assert "INVALID_ARGUMENT" in str(err.value.status())
    assert "value 2.5 at index 1 cannot be represented exactly in INT64" in err.value.message()
    # The CLI sends integers for an integer input and prints every output type.
    rows = tmp_path / "ids.json"
    rows.write_text(json.dumps(ids.tolist()))
    printed = json.loads(cli("predict", "onnx-typed", "--input", str(rows)).stdout)
    outputs = {o["name"]: o for o in printed["outputs"]}
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["data"] == scores.argmax(axis=1).tolist()
    assert outputs["positive"]["data"] == (scores > 0).flatten().tolist()


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
