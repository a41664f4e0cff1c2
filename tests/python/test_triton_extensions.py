"""Triton's extensions through tritonclient against the router: model configuration,
statistics summed over the workers, the repository index, load/unload (deploy and
undeploy through the registry) and streaming inference."""
import queue
import time

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import HTTP, ROWS, expected, unload_and_reload


def test_server_metadata_lists_the_extensions(cluster):
    router, _ = cluster
    server = grpcclient.InferenceServerClient(router).get_server_metadata(as_json=True)
    assert {"classification", "model_configuration", "statistics", "model_repository"} <= set(server["extensions"])


def test_model_config_reports_batching_and_signature(cluster, cli):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    # The deployment as the cluster made it, whatever another test set before: this test
    # reads the worker's own batching settings.
    cli("deploy", "houses", "--alias", "production")
    cli("deploy", "onnx-classifier", "--version", "1")
    deadline = time.time() + 60
    while client.get_model_config("houses", as_json=True)["config"].get("max_batch_size") != 64 or \
            client.get_model_config("onnx-classifier", as_json=True)["config"].get("max_batch_size") != 64:
        assert time.time() < deadline, "the deployments never went back to the worker's batching settings"
        time.sleep(0.05)
    config = client.get_model_config("houses", as_json=True)["config"]
    assert config["name"] == "houses" and config["platform"] == "modelplane_ndarray"
    assert config["max_batch_size"] == 64, "dynamic batching is on by default"
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": ["3"]}]
    assert config["output"][0]["name"] == "predictions"
    assert "dynamic_batching" in config
    # The graph's batch dimension is symbolic, so it batches too; as in Triton, dims
    # then leave the batch dimension out.
    onnx = client.get_model_config("onnx-classifier", as_json=True)["config"]
    assert onnx["platform"] == "tract_onnx" and onnx["max_batch_size"] == 64
    assert onnx["input"] == [{"name": "features", "data_type": "TYPE_FP32", "dims": ["4"]}]
    assert onnx["output"] == [{"name": "probs", "data_type": "TYPE_FP32", "dims": ["3"]}]


def test_statistics_count_requests_rows_and_time(cluster):
    router, artifact = cluster
    client = grpcclient.InferenceServerClient(router)

    def houses_stats():
        stats = client.get_inference_statistics("houses", as_json=True)["model_stats"]
        assert [s["version"] for s in stats] == ["1"]
        return stats[0]

    before = houses_stats()
    x = grpcclient.InferInput("input", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    for _ in range(5):
        client.infer("houses", [x])
    after = houses_stats()
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 5 * len(ROWS)
    success = after["inference_stats"]["success"]
    assert int(success["count"]) - int(before["inference_stats"]["success"].get("count", 0)) == 5
    assert int(success["ns"]) > 0 and int(after["execution_count"]) >= 1
    assert int(after["last_inference"]) >= int(time.time() * 1000) - 60_000


def test_repository_index_lists_deployed_versions(cluster):
    router, _ = cluster
    index = grpcclient.InferenceServerClient(router).get_model_repository_index(as_json=True)["models"]
    entries = {(m["name"], m["version"]): m["state"] for m in index}
    assert entries[("houses", "1")] == "READY"
    assert entries[("tickets", "1")] == "READY"


def test_unload_and_load_undeploy_and_redeploy(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    index = lambda: {m["name"] for m in client.get_model_repository_index(as_json=True)["models"]}  # noqa: E731
    unload_and_reload(client, "onnx-classifier", index)
    try:
        client.load_model("no-such-model", headers=HTTP["admin"])
        raise AssertionError("loading an unknown model succeeded")
    except grpcclient.InferenceServerException as err:
        assert "NOT_FOUND" in str(err.status())


def test_stream_infer_answers_every_request_in_order(cluster):
    router, artifact = cluster
    client = grpcclient.InferenceServerClient(router)
    results = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for i, row in enumerate(ROWS):
            x = grpcclient.InferInput("input", [1, 3], "FP32")
            x.set_data_from_numpy(row.reshape(1, 3))
            client.async_stream_infer("houses", [x], request_id=str(i))
        bad = grpcclient.InferInput("input", [1, 2], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 2), dtype=np.float32))
        client.async_stream_infer("houses", [bad], request_id="bad")
        answers = [results.get(timeout=20) for _ in range(len(ROWS) + 1)]
    finally:
        client.stop_stream()
    want = expected(artifact)
    for i, (result, error) in enumerate(answers[:-1]):
        assert error is None, error
        assert result.get_response().id == str(i)
        np.testing.assert_allclose(result.as_numpy("predictions"), want[i : i + 1], rtol=1e-4)
    result, error = answers[-1]
    assert result is None and "INVALID_ARGUMENT" in str(error), "a bad request is an error on the stream"


def test_a_stream_marks_each_answer_final_when_asked(cluster):
    """tritonclient's enable_empty_final_response: streaming clients read until an answer
    says triton_final_response. Each request here has one answer, which says so, on
    router and worker alike; without the flag answers carry no marker, as in Triton."""
    router, artifact = cluster
    for server in (router, HTTP["worker"]):
        client = grpcclient.InferenceServerClient(server)
        results = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        try:
            x = grpcclient.InferInput("input", [1, 3], "FP32")
            x.set_data_from_numpy(ROWS[:1])
            client.async_stream_infer("houses", [x], request_id="marked", enable_empty_final_response=True)
            client.async_stream_infer("houses", [x], request_id="plain")
            answers = [results.get(timeout=20) for _ in range(2)]
        finally:
            client.stop_stream()
        (marked, error), (plain, _) = answers
        assert error is None, error
        final = marked.get_response().parameters["triton_final_response"]
        assert final.WhichOneof("parameter_choice") == "bool_param" and final.bool_param, server
        np.testing.assert_allclose(marked.as_numpy("predictions"), expected(artifact)[:1], rtol=1e-4)
        assert "triton_final_response" not in plain.get_response().parameters, server

        # tritonclient only ever sends the flag as a bool; other clients may not.
        odd = service_pb2.ModelInferRequest(model_name="houses", id="odd")
        odd.inputs.add(name="input", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1.0] * 3)
        odd.parameters["triton_enable_empty_final_response"].int64_param = 1
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server))
        (answer,) = list(stub.ModelStreamInfer(iter([odd]), timeout=20))
        assert answer.error_message.startswith("INVALID_ARGUMENT: ") and "must be a bool_param, got int64_param 1" \
            in answer.error_message, answer
        assert answer.infer_response.id == "odd"


def test_a_stream_error_names_the_request_it_answers(cluster):
    """As Triton does, an error on a stream carries the failed request's model, version
    and id (tritonclient's callback hides them; other clients read them)."""
    router, _ = cluster
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(router))

    def request(request_id, width):
        message = service_pb2.ModelInferRequest(model_name="houses", model_version="1", id=request_id)
        tensor = message.inputs.add(name="input", datatype="FP32", shape=[1, width])
        tensor.contents.fp32_contents.extend([1.0] * width)
        return message

    answers = list(stub.ModelStreamInfer(iter([request("good", 3), request("bad", 2)]), timeout=20))
    assert [a.error_message == "" for a in answers] == [True, False], answers
    failed = answers[1]
    assert failed.error_message.startswith("INVALID_ARGUMENT: "), failed.error_message
    assert (failed.infer_response.model_name, failed.infer_response.model_version) == ("houses", "1")
    assert failed.infer_response.id == "bad"


def test_concurrent_large_requests_are_batched_and_answered_separately(cluster):
    """Requests too large to run inline (50k rows x 3 features is above the 131k
    multiply-adds a lone request may run inline) go through the dynamic batcher: concurrent ones
    may share an execution, yet each gets exactly its own rows back."""
    import concurrent.futures

    router, artifact = cluster
    client = grpcclient.InferenceServerClient(router)
    rng = np.random.default_rng(1)
    batches = [rng.uniform(1, 200, size=(50_000 + i, 3)).astype(np.float32) for i in range(8)]

    def run(rows):
        x = grpcclient.InferInput("input", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows)
        return grpcclient.InferenceServerClient(router).infer("houses", [x]).as_numpy("predictions")

    before = client.get_inference_statistics("houses", as_json=True)["model_stats"][0]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, batches))
    for rows, got in zip(batches, results):
        assert got.shape == (len(rows), 1)
        want = expected(artifact, rows)
        # float32 sums of ~1e6-sized terms: compare relative to the largest answer.
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6 * np.abs(want).max())
    after = client.get_inference_statistics("houses", as_json=True)["model_stats"][0]
    queued = int(after["inference_stats"]["queue"].get("count", 0)) - int(before["inference_stats"].get("queue", {}).get("count", 0))
    assert queued == len(batches), "every large request went through the batching queue"
