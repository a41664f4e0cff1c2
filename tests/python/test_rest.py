"""KServe v2 REST on the router: plain JSON as curl sends it, and tritonclient.http
(which uses Triton's binary tensor extension by default)."""
import json
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as httpclient

from conftest import HTTP, ROWS, SLOW_WIDTH, TYPED_W, expected, slow_rows, unload_and_reload


def call(url, body=None):
    """(status, parsed JSON or None) of a GET, or a POST when `body` is given."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_health_metadata_and_readiness_paths(rest):
    assert call(f"{rest}/v2/health/live")[0] == 200
    assert call(f"{rest}/v2/health/ready")[0] == 200
    status, server = call(f"{rest}/v2")
    assert status == 200 and server["name"] == "modelplane"
    status, meta = call(f"{rest}/v2/models/houses")
    assert status == 200 and meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}]
    assert call(f"{rest}/v2/models/houses/versions/1")[1]["versions"] == ["1"]
    assert call(f"{rest}/v2/models/houses/ready")[0] == 200
    assert call(f"{rest}/v2/models/houses/versions/production/ready")[0] == 200
    status, error = call(f"{rest}/v2/models/no-such-model/ready")
    assert status == 404 and "not found" in error["error"]


def test_json_infer_as_curl_sends_it(rest, cluster):
    _, artifact = cluster
    body = {"id": "q1", "inputs": [{"name": "input", "shape": [3, 3], "datatype": "FP32",
                                    "data": ROWS.tolist()}]}
    status, answer = call(f"{rest}/v2/models/houses/versions/production/infer", body)
    assert status == 200, answer
    assert answer["id"] == "q1" and answer["model_version"] == "1"
    (output,) = answer["outputs"]
    assert output["name"] == "predictions" and output["shape"] == [3, 1]
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 1), expected(artifact), rtol=1e-4)
    texts = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                         "data": ["I was charged twice for one invoice", "the courier lost my parcel"]}],
             "outputs": [{"name": "label"}]}
    status, answer = call(f"{rest}/v2/models/tickets/infer", texts)
    assert status == 200, answer
    assert answer["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["billing", "delivery"]}]


def test_bad_requests_get_precise_statuses(rest):
    wrong_shape = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    status, error = call(f"{rest}/v2/models/houses/infer", wrong_shape)
    assert status == 400 and "[-1, 3]" in error["error"]
    out_of_range = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "UINT8", "data": [1, 2, 300]}]}
    status, error = call(f"{rest}/v2/models/houses/infer", out_of_range)
    assert status == 400 and "300 does not fit UINT8" in error["error"]
    status, error = call(f"{rest}/v2/models/houses/infer", {"nothing": True})
    assert status == 400 and "inputs" in error["error"]
    too_few = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}
    status, error = call(f"{rest}/v2/models/houses/infer", too_few)
    assert status == 400 and 'has 5 values in "data"; shape [2, 3] needs 6' in error["error"], error
    one_row = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    status, error = call(f"{rest}/v2/models/houses/infer", dict(one_row, outputs="predictions"))
    assert status == 400 and '"outputs" must be an array' in error["error"], error
    status, error = call(f"{rest}/v2/models/no-such-model/infer", wrong_shape)
    assert status == 404
    # Python's json writes NaN as a bare token, which is not JSON: the error says so.
    with_nan = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, float("nan"), 3]}]}
    status, error = call(f"{rest}/v2/models/houses/infer", with_nan)
    assert status == 400 and "NaN and Infinity are not JSON numbers" in error["error"], error


def test_tritonclient_http_binary_and_json(rest, cluster):
    _, artifact = cluster
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("houses")
    for binary in (True, False):
        x = httpclient.InferInput("input", list(ROWS.shape), "FP32")
        x.set_data_from_numpy(ROWS, binary_data=binary)
        out = httpclient.InferRequestedOutput("predictions", binary_data=binary)
        result = client.infer("houses", [x], outputs=[out])
        np.testing.assert_allclose(result.as_numpy("predictions"), expected(artifact), rtol=1e-4)
    x = httpclient.InferInput("input", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    np.testing.assert_allclose(client.infer("houses", [x]).as_numpy("predictions"), expected(artifact), rtol=1e-4)


def test_batches_up_to_the_grpc_message_limit(rest, cluster):
    """REST takes bodies as large as the gRPC port's messages (64 MiB), not axum's default
    2 MB; a larger body is refused with a KServe error body."""
    _, artifact = cluster
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    repeats = 100_000  # 300,000 rows of 3 FP32 features: 3.6 MB of tensor data
    rows = np.tile(ROWS, (repeats, 1))
    x = httpclient.InferInput("input", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows)
    out = httpclient.InferRequestedOutput("predictions", binary_data=True)
    result = client.infer("houses", [x], outputs=[out]).as_numpy("predictions")
    np.testing.assert_allclose(result, np.tile(expected(artifact), (repeats, 1)), rtol=1e-4)
    request = urllib.request.Request(f"{rest}/v2/models/houses/infer", data=b" " * ((64 << 20) + 1),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=60)
        raise AssertionError("a body over 64 MiB was taken")
    except urllib.error.HTTPError as err:
        assert err.code == 413, err.code
        assert "larger than the 64 MiB the router accepts" in json.loads(err.read())["error"]


def test_the_timeout_parameter_is_the_requests_deadline_as_tritonclient_http_sends_it(rest, cluster):
    router, artifact = cluster
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    # The slow model, with a timeout of a quarter of the time it computes here: the
    # deadline passes while it runs, on any machine.
    rows, compute = slow_rows(router)
    quarter = int(compute / 4 * 1e6)  # microseconds, as Triton reads it
    slow = httpclient.InferInput("x", [rows, SLOW_WIDTH], "FP32")
    slow.set_data_from_numpy(np.ones((rows, SLOW_WIDTH), dtype=np.float32), binary_data=True)
    try:
        client.infer("slow-chain", [slow], timeout=quarter)
        raise AssertionError(f"a request with a {quarter} µs timeout, computing for {compute:.2f}s, was answered")
    except httpclient.InferenceServerException as err:
        assert "deadline" in err.message(), err.message()
    x = httpclient.InferInput("input", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    result = client.infer("houses", [x], timeout=600_000_000)
    np.testing.assert_allclose(result.as_numpy("predictions"), expected(artifact), rtol=1e-4)
    body = {"parameters": {"timeout": "soon"},
            "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    status, error = call(f"{rest}/v2/models/houses/infer", body)
    assert status == 400 and "microseconds" in error["error"], error
    body = {"parameters": {"timeout": quarter},
            "inputs": [{"name": "x", "shape": [rows, SLOW_WIDTH], "datatype": "FP32", "data": [1.0] * (rows * SLOW_WIDTH)}]}
    status, error = call(f"{rest}/v2/models/slow-chain/infer", body)
    assert status == 504 and "deadline" in error["error"], (status, error)


def test_json_integer_input_and_integer_and_bool_outputs(rest):
    """An ONNX model taking INT64 and answering INT64 and BOOL: JSON carries them as
    numbers and true/false."""
    ids = [[1, 2, 3], [4, 0, 1]]
    body = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [2, 3], "data": ids}]}
    status, answer = call(f"{rest}/v2/models/onnx-typed/infer", body)
    assert status == 200, answer
    outputs = {o["name"]: o for o in answer["outputs"]}
    scores = np.array(ids, dtype=np.float32) @ TYPED_W
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["data"] == scores.argmax(axis=1).tolist()
    assert outputs["positive"]["datatype"] == "BOOL"
    assert outputs["positive"]["data"] == (scores > 0).flatten().tolist()
    # tritonclient.http, with Triton's binary tensors and with JSON, both ways.
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    for binary in (True, False):
        x = httpclient.InferInput("ids", [2, 3], "INT64")
        x.set_data_from_numpy(np.array(ids, dtype=np.int64), binary_data=binary)
        wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("label", "positive")]
        result = client.infer("onnx-typed", [x], outputs=wanted)
        assert result.as_numpy("label").dtype == np.int64, binary
        assert result.as_numpy("label").tolist() == scores.argmax(axis=1).tolist(), binary
        assert result.as_numpy("positive").tolist() == (scores > 0).tolist(), binary


def test_triton_http_extensions_as_tritonclient_uses_them(rest):
    """Model configuration, statistics and the model repository over HTTP, in the JSON
    Triton's HTTP server answers with."""
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    config = client.get_model_config("houses")
    assert config["name"] == "houses" and config["platform"] == "modelplane_ndarray"
    assert config["max_batch_size"] == 64 and "dynamic_batching" in config
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [3]}]
    assert client.get_model_config("houses", "1") == config

    def houses_v1():
        (stats,) = [s for s in client.get_inference_statistics("houses")["model_stats"] if s["version"] == "1"]
        return stats

    before = houses_v1()
    x = httpclient.InferInput("input", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    client.infer("houses", [x])
    after = houses_v1()
    assert after["inference_count"] - before["inference_count"] == len(ROWS)
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 1
    assert after["inference_stats"]["success"]["ns"] > 0 and after["batch_stats"], after
    everything = client.get_inference_statistics()["model_stats"]
    assert {"houses", "tickets"} <= {s["name"] for s in everything}

    index = client.get_model_repository_index()
    assert {"name": "houses", "version": "1", "state": "READY", "reason": ""} in index
    status, ready_only = call(f"{rest}/v2/repository/index", {"ready": True})
    assert status == 200 and all(m["state"] == "READY" for m in ready_only) and ready_only
    status, error = call(f"{rest}/v2/repository/index", {"ready": "yes"})
    assert status == 400 and "expected true or false" in error["error"]

    unload_and_reload(client, "onnx-typed", lambda: {m["name"] for m in client.get_model_repository_index()})
    try:
        client.load_model("no-such-model", headers=HTTP["admin"])
        raise AssertionError("loading an unknown model succeeded")
    except httpclient.InferenceServerException as err:
        assert err.status() == "404" and "not found" in err.message()
    status, error = call(f"{rest}/v2/models/no-such-model/config")
    assert status == 404 and "not found" in error["error"]
