"""Triton's classification extension through tritonclient against the router, gRPC and
HTTP: an output requested with `class_count` comes back as its top classes, BYTES
"<value>:<index>[:<label>]" strings, highest first, with the labels a trained
classifier knows."""
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

TEXTS = np.array([b"I was charged twice for one invoice", b"the courier lost my parcel"], dtype=np.object_)


def parsed(element):
    """(value, index, label or None) of one classification string."""
    parts = element.decode().split(":")
    return float(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else None


def ticket_texts():
    x = grpcclient.InferInput("text", [len(TEXTS)], "BYTES")
    x.set_data_from_numpy(TEXTS)
    return x


def test_grpc_top_classes_are_ranked_and_labelled(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    full = client.infer("tickets", [ticket_texts()])
    probabilities, labels = full.as_numpy("probabilities"), full.as_numpy("label")

    asked = [grpcclient.InferRequestedOutput("probabilities", class_count=2), grpcclient.InferRequestedOutput("label")]
    result = client.infer("tickets", [ticket_texts()], outputs=asked)
    classes = result.as_numpy("probabilities")
    assert classes.shape == (2, 2) and result.get_output("probabilities").datatype == "BYTES"
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    for row, (first, second) in enumerate(classes):
        (value, index, label), (next_value, next_index, _) = parsed(first), parsed(second)
        assert index == int(np.argmax(probabilities[row])) and label.encode() == labels[row]
        assert value == pytest.approx(float(probabilities[row][index]), rel=1e-6)
        assert next_value <= value and next_index != index
        assert next_value == pytest.approx(float(np.sort(probabilities[row])[-2]), rel=1e-6)

    every = client.infer("tickets", [ticket_texts()],
                         outputs=[grpcclient.InferRequestedOutput("probabilities", class_count=10)])
    assert every.as_numpy("probabilities").shape == (2, 3), "more classes than there are gives them all"
    assert {parsed(e)[2] for e in every.as_numpy("probabilities")[0]} == {"account", "billing", "delivery"}


def test_http_classes_of_an_onnx_graph_have_no_labels(cluster, rest):
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    x = np.random.default_rng(7).normal(size=(4, 4)).astype(np.float32)
    features = httpclient.InferInput("features", [4, 4], "FP32")
    features.set_data_from_numpy(x)
    probs = client.infer("onnx-classifier", [features]).as_numpy("probs")
    for binary in (True, False):
        asked = [httpclient.InferRequestedOutput("probs", binary_data=binary, class_count=1)]
        classes = client.infer("onnx-classifier", [features], outputs=asked).as_numpy("probs")
        assert classes.shape == (4, 1), binary
        for row, (element,) in enumerate(classes):
            element = element if isinstance(element, bytes) else element.encode()
            value, index, label = parsed(element)
            assert (index, label) == (int(np.argmax(probs[row])), None)
            assert value == pytest.approx(float(probs[row].max()), rel=1e-6)


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_bad_classification_request_says_what_is_wrong(cluster, rest):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    with pytest.raises(grpcclient.InferenceServerException) as err:
        client.infer("tickets", [ticket_texts()], outputs=[grpcclient.InferRequestedOutput("label", class_count=1)])
    assert "INVALID_ARGUMENT" in str(err.value.status())
    assert 'output "label" is BYTES, which does not rank' in err.value.message()

    texts = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["the courier lost my parcel"]}
    for value, shown in [(0, "int64_param 0"), ("two", 'string_param "two"'), (1.5, "double_param 1.5")]:
        body = {"inputs": [texts], "outputs": [{"name": "probabilities", "parameters": {"classification": value}}]}
        status, answer = post(f"{rest}/v2/models/tickets/infer", body)
        assert status == 400 and f"1 or more; got {shown}" in answer["error"], answer
    body = {"inputs": [texts], "outputs": [{"name": "probabilities", "parameters": {"classification": [2]}}]}
    status, answer = post(f"{rest}/v2/models/tickets/infer", body)
    assert status == 400 and "must be a boolean, number or string" in answer["error"], answer
    ok = {"inputs": [texts], "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}]}
    status, answer = post(f"{rest}/v2/models/tickets/infer", ok)
    assert status == 200 and answer["outputs"][0]["shape"] == [1, 1], answer
    assert answer["outputs"][0]["data"][0].endswith(":delivery"), answer
