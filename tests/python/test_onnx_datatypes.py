"""ONNX graphs with UINT8 and FP16 tensors, as image models exported in half precision
carry them: numpy's dtypes through tritonclient gRPC and HTTP, exact conversions from
what clients send by default, precise refusals, and `modelplane predict`."""
import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

PIXELS = np.array([[0, 1, 128, 255], [10, 20, 30, 40]], dtype=np.uint8)


def infer_pixels(client, pixels, datatype):
    tensor = grpcclient.InferInput("pixels", list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels)
    return client.infer("onnx-pixels", [tensor])


def test_uint8_pixels_in_fp16_and_uint8_out(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    meta = client.get_model_metadata("onnx-pixels", as_json=True)
    assert meta["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": ["-1", "4"]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("scaled", "FP16"), ("inverted", "UINT8")]
    config = client.get_model_config("onnx-pixels", as_json=True)["config"]
    assert config["input"][0]["data_type"] == "TYPE_UINT8"
    assert [o["data_type"] for o in config["output"]] == ["TYPE_FP16", "TYPE_UINT8"]

    # UINT8 as it is, and the INT32 / FP32 arrays clients often hold, converted exactly.
    for pixels, datatype in [(PIXELS, "UINT8"), (PIXELS.astype(np.int32), "INT32"),
                             (PIXELS.astype(np.float32), "FP32")]:
        result = infer_pixels(client, pixels, datatype)
        scaled = result.as_numpy("scaled")
        assert scaled.dtype == np.float16, datatype
        np.testing.assert_array_equal(scaled, PIXELS.astype(np.float16) * np.float16(0.5))
        inverted = result.as_numpy("inverted")
        assert inverted.dtype == np.uint8 and inverted.tolist() == (255 - PIXELS).tolist(), datatype

    for bad, datatype, named in [(np.array([[0, 1, 256, 3]], dtype=np.int32), "INT32", "value 256 at index 2"),
                                 (np.array([[0, -1, 2, 3]], dtype=np.int32), "INT32", "value -1 at index 1"),
                                 (np.array([[0, 1, 2, 3.5]], dtype=np.float32), "FP32", "value 3.5 at index 3")]:
        with pytest.raises(grpcclient.InferenceServerException) as err:
            infer_pixels(client, bad, datatype)
        assert "INVALID_ARGUMENT" in str(err.value.status())
        assert named in err.value.message() and "UINT8" in err.value.message(), err.value.message()


def test_fp16_in_and_out(cluster, cli, tmp_path):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    x = np.array([[0.1, -2.5, 1000.0], [65504.0 / 4, 0.0, -0.0009765625]], dtype=np.float16)
    tensor = grpcclient.InferInput("x", list(x.shape), "FP16")
    tensor.set_data_from_numpy(x)
    doubled = client.infer("onnx-half", [tensor]).as_numpy("doubled")
    assert doubled.dtype == np.float16
    np.testing.assert_array_equal(doubled, x + x)

    # FP32 values that FP16 holds exactly convert; 0.1 (FP16 has no exact form) is refused.
    exact = grpcclient.InferInput("x", [1, 3], "FP32")
    exact.set_data_from_numpy(np.array([[0.5, -3.0, 2048.0]], dtype=np.float32))
    np.testing.assert_array_equal(client.infer("onnx-half", [exact]).as_numpy("doubled"),
                                  np.array([[1.0, -6.0, 4096.0]], dtype=np.float16))
    inexact = grpcclient.InferInput("x", [1, 3], "FP32")
    inexact.set_data_from_numpy(np.array([[0.5, 0.1, 1.0]], dtype=np.float32))
    with pytest.raises(grpcclient.InferenceServerException) as err:
        client.infer("onnx-half", [inexact])
    assert "INVALID_ARGUMENT" in str(err.value.status())
    assert "at index 1 cannot be represented exactly in FP16; send FP16" in err.value.message()

    # The CLI rounds its JSON numbers to FP16 as numpy does and prints FP16 outputs.
    rows = tmp_path / "half.json"
    rows.write_text(json.dumps([[0.1, 1.5, -7.0]]))
    printed = json.loads(cli("predict", "onnx-half", "--input", str(rows)).stdout)
    [output] = printed["outputs"]
    assert output["datatype"] == "FP16" and output["shape"] == [1, 3]
    expected = np.array([[0.1, 1.5, -7.0]], dtype=np.float16) * 2
    assert output["data"] == expected.astype(np.float64).flatten().tolist()


def test_rest_json_and_binary_with_uint8_and_fp16(rest):
    client = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    for binary in (False, True):
        tensor = httpclient.InferInput("pixels", list(PIXELS.shape), "UINT8")
        tensor.set_data_from_numpy(PIXELS, binary_data=binary)
        wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("scaled", "inverted")]
        result = client.infer("onnx-pixels", [tensor], outputs=wanted)
        scaled = result.as_numpy("scaled")
        np.testing.assert_array_equal(scaled.astype(np.float16), PIXELS.astype(np.float16) * np.float16(0.5))
        assert result.as_numpy("inverted").tolist() == (255 - PIXELS).tolist(), binary
        if binary:
            assert scaled.dtype == np.float16 and result.as_numpy("inverted").dtype == np.uint8
