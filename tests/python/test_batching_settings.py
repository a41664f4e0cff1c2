"""Dynamic batching per deployment: `modelplane deploy --max-batch-size/--max-queue-delay-us`
puts the loaded versions under new batching settings without reloading them, Triton's
ModelConfig shows them, batches stay within them, and bad settings are refused."""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient

from conftest import B1, B2, ROWS, W1, W2


def wait_for(predicate, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def executions_by_size(before, after):
    """Executions per batch size between two ModelStatistics, from Triton's batch_stats."""
    def by_size(s):
        return {int(b["batch_size"]): int(b["compute_infer"].get("count", 0)) for b in s.get("batch_stats", [])}
    grown = {size: count - by_size(before).get(size, 0) for size, count in by_size(after).items()}
    return {size: count for size, count in grown.items() if count}


def test_a_deployment_sets_the_batching_of_its_versions(cluster, cli):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)

    def config():
        return client.get_model_config("houses", as_json=True)["config"]

    def stats():
        return client.get_inference_statistics("houses", as_json=True)["model_stats"][0]

    try:
        # A long wait makes concurrent one-row requests merge; the size caps the merge.
        cli("deploy", "houses", "--alias", "production", "--max-batch-size", "4", "--max-queue-delay-us", "100000")
        wait_for(lambda: config().get("max_batch_size") == 4, "max_batch_size 4 in ModelConfig")
        assert int(config()["dynamic_batching"]["max_queue_delay_microseconds"]) == 100000

        row = ROWS[:1]
        clients = [grpcclient.InferenceServerClient(router) for _ in range(16)]

        def infer(one):
            x = grpcclient.InferInput("input", list(row.shape), "FP32")
            x.set_data_from_numpy(row)
            return one.infer("houses", [x]).as_numpy("predictions")

        before = stats()
        with ThreadPoolExecutor(len(clients)) as pool:
            answers = list(pool.map(infer, clients))
        after = stats()
        assert all(np.array_equal(a, answers[0]) for a in answers)
        rows = int(after["inference_count"]) - int(before.get("inference_count", 0))
        executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
        assert rows == 16
        assert executions >= 4, f"{executions} executions for 16 rows: a batch was larger than 4 rows"
        assert executions < 16, "requests waiting up to 100 ms together were not merged"
        # Triton's batch_stats say the same, execution by execution.
        grown = executions_by_size(before, after)
        assert sum(grown.values()) == executions, grown
        assert sum(size * count for size, count in grown.items()) == 16, grown
        assert max(grown) <= 4 and max(grown) > 1, grown

        refused = cli("deploy", "houses", "--alias", "production", "--queue-capacity", "0", check=False)
        assert refused.returncode != 0
        assert "queue capacity must be at least 1 request" in refused.stderr, refused.stderr
        assert "InvalidArgument" in refused.stderr, refused.stderr
        assert config()["max_batch_size"] == 4, "a refused deployment changes nothing"
    finally:
        # Deploying without batching flags goes back to the worker's own settings.
        cli("deploy", "houses", "--alias", "production")
        wait_for(lambda: config().get("max_batch_size") == 64, "the worker's max_batch_size 64 back")


def test_onnx_requests_merge_into_batches_and_each_gets_its_own_rows(cluster, cli):
    """An ONNX graph whose batch dimension is symbolic batches like a native model:
    concurrent requests (of different row counts) run as one execution, and the answer
    is split back so each caller gets exactly its own rows."""
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)

    def stats():
        return client.get_inference_statistics("onnx-classifier", as_json=True)["model_stats"][0]

    def expected(x):
        logits = np.maximum(x @ W1 + B1, 0) @ W2 + B2
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    rng = np.random.default_rng(7)
    requests = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(16)]
    clients = [grpcclient.InferenceServerClient(router) for _ in requests]

    def infer(pair):
        one, x = pair
        tensor = grpcclient.InferInput("features", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return one.infer("onnx-classifier", [tensor]).as_numpy("probs")

    try:
        cli("deploy", "onnx-classifier", "--version", "1", "--max-batch-size", "8", "--max-queue-delay-us", "100000")
        wait_for(lambda: client.get_model_config("onnx-classifier", as_json=True)["config"].get("max_batch_size") == 8,
                 "max_batch_size 8 for the ONNX model")
        before = stats()
        with ThreadPoolExecutor(len(clients)) as pool:
            answers = list(pool.map(infer, zip(clients, requests)))
        after = stats()
        for x, got in zip(requests, answers):
            assert got.shape == (x.shape[0], 3)
            np.testing.assert_allclose(got, expected(x), rtol=1e-4, atol=1e-6)
        rows = int(after["inference_count"]) - int(before.get("inference_count", 0))
        executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
        assert rows == sum(x.shape[0] for x in requests)
        assert executions < len(requests), "requests waiting up to 100 ms together were not merged"
        grown = executions_by_size(before, after)
        assert sum(grown.values()) == executions and sum(s * n for s, n in grown.items()) == rows, grown
        assert max(grown) <= 8, f"a batch exceeded 8 rows: {grown}"
    finally:
        cli("deploy", "onnx-classifier", "--version", "1")
        wait_for(lambda: client.get_model_config("onnx-classifier", as_json=True)["config"].get("max_batch_size") == 64,
                 "the worker's max_batch_size 64 back")
