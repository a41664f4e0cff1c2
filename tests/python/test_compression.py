"""Compressed requests, as Triton takes them: tritonclient.grpc's
`compression_algorithm` (gzip, deflate) against router and worker, and
tritonclient.http's `request_compression_algorithm` (a Content-Encoding body)."""
import gzip
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import HTTP, ROWS, expected


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_grpc_requests_may_come_compressed(cluster, algorithm):
    router, artifact = cluster
    for server in (router, HTTP["worker"]):
        client = grpcclient.InferenceServerClient(server)
        x = grpcclient.InferInput("input", list(ROWS.shape), "FP32")
        x.set_data_from_numpy(ROWS)
        result = client.infer("houses", [x], compression_algorithm=algorithm)
        np.testing.assert_allclose(result.as_numpy("predictions"), expected(artifact), rtol=1e-4)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_http_bodies_may_come_compressed(cluster, rest, algorithm):
    _, artifact = cluster
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    for binary in (True, False):
        x = httpclient.InferInput("input", list(ROWS.shape), "FP32")
        x.set_data_from_numpy(ROWS, binary_data=binary)
        result = client.infer("houses", [x], request_compression_algorithm=algorithm,
                              response_compression_algorithm=algorithm)
        np.testing.assert_allclose(result.as_numpy("predictions"), expected(artifact), rtol=1e-4)


def post(url, body, encoding):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                              "Content-Encoding": encoding})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_body_that_does_not_decompress_is_refused_clearly(rest):
    url = f"{rest}/v2/models/houses/infer"
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                                   "data": [1, 2, 3]}]}).encode()
    status, answer = post(url, gzip.compress(body), "gzip")
    assert status == 200 and answer["outputs"][0]["shape"] == [1, 1], answer
    status, answer = post(url, body, "gzip")
    assert status == 400 and "does not decompress" in answer["error"], answer
    status, answer = post(url, body, "br")
    assert status == 415 and 'Content-Encoding "br" is not supported' in answer["error"], answer
    bomb = gzip.compress(b" " * (64 * 1024 * 1024 + 1), compresslevel=1)
    status, answer = post(url, bomb, "gzip")
    assert status == 413 and "decompressed, is larger than the 64 MiB" in answer["error"], answer
