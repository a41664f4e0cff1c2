"""Dynamic batching per deployment: `modelplane deploy --max-batch-size/--max-queue-delay-us`
puts the loaded versions under new batching settings without reloading them, Triton's
ModelConfig shows them, batches stay within them, and bad settings are refused."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from conftest import B1, B2, ROWS, TYPED_W, W1, W2


# The longest queue delay a deployment may set (1 s): requests that must merge get it, so
# that they need to arrive within a second of each other, not within a tuned window.
# They start together (`together`), so only a machine stalled for a second could miss it.
MERGE_DELAY_US = "1000000"


def together(count, send):
    """`send(i)` for i in range(count), from `count` threads released at once."""
    start = threading.Barrier(count, timeout=60)

    def run(i):
        start.wait()
        return send(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def wait_for(predicate, what, timeout=60):
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
        cli("deploy", "houses", "--alias", "production", "--max-batch-size", "4", "--max-queue-delay-us",
            MERGE_DELAY_US)
        wait_for(lambda: config().get("max_batch_size") == 4, "max_batch_size 4 in ModelConfig")
        assert int(config()["dynamic_batching"]["max_queue_delay_microseconds"]) == int(MERGE_DELAY_US)

        row = ROWS[:1]
        clients = [grpcclient.InferenceServerClient(router) for _ in range(16)]

        def infer(one):
            x = grpcclient.InferInput("input", list(row.shape), "FP32")
            x.set_data_from_numpy(row)
            return one.infer("houses", [x]).as_numpy("predictions")

        before = stats()
        answers = together(len(clients), lambda i: infer(clients[i]))
        after = stats()
        assert all(np.array_equal(a, answers[0]) for a in answers)
        rows = int(after["inference_count"]) - int(before.get("inference_count", 0))
        executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
        assert rows == 16
        assert executions >= 4, f"{executions} executions for 16 rows: a batch was larger than 4 rows"
        assert executions < 16, "requests waiting up to 1 s together were not merged"
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


def classifier_case(rng, rows):
    """A request to onnx-classifier (FP32 in) and the probabilities numpy expects."""
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    logits = np.maximum(x @ W1 + B1, 0) @ W2 + B2
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return ("features", x, "FP32"), "probs", e / e.sum(axis=1, keepdims=True)


def typed_case(rng, rows):
    """A request to onnx-typed (INT64 ids in) and the INT64 labels numpy expects."""
    ids = rng.integers(0, 50, size=(rows, 3)).astype(np.int64)
    return ("ids", ids, "INT64"), "label", (ids.astype(np.float32) @ TYPED_W).argmax(axis=1)


@pytest.mark.parametrize("model,case", [("onnx-classifier", classifier_case), ("onnx-typed", typed_case)])
def test_onnx_requests_merge_into_batches_and_each_gets_its_own_rows(cluster, cli, model, case):
    """An ONNX graph whose batch dimension is symbolic batches like a native model,
    whatever its tensor types: concurrent requests (of different row counts) run as one
    execution, and the answer is split back so each caller gets exactly its own rows."""
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)

    def stats():
        return client.get_inference_statistics(model, as_json=True)["model_stats"][0]

    def max_batch_size():
        return client.get_model_config(model, as_json=True)["config"].get("max_batch_size")

    rng = np.random.default_rng(7)
    cases = [case(rng, 1 + i % 3) for i in range(16)]
    clients = [grpcclient.InferenceServerClient(router) for _ in cases]

    def infer(pair):
        one, ((name, x, datatype), output, _) = pair
        tensor = grpcclient.InferInput(name, list(x.shape), datatype)
        tensor.set_data_from_numpy(x)
        return one.infer(model, [tensor]).as_numpy(output)

    try:
        cli("deploy", model, "--version", "1", "--max-batch-size", "8", "--max-queue-delay-us", MERGE_DELAY_US)
        wait_for(lambda: max_batch_size() == 8, f"max_batch_size 8 for {model}")
        before = stats()
        answers = together(len(clients), lambda i: infer((clients[i], cases[i])))
        after = stats()
        for (_, _, want), got in zip(cases, answers):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        rows = int(after["inference_count"]) - int(before.get("inference_count", 0))
        executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
        assert rows == sum(x.shape[0] for (_, x, _), _, _ in cases)
        assert executions < len(cases), "requests waiting up to 1 s together were not merged"
        grown = executions_by_size(before, after)
        assert sum(grown.values()) == executions and sum(s * n for s, n in grown.items()) == rows, grown
        assert max(grown) <= 8, f"a batch exceeded 8 rows: {grown}"
    finally:
        cli("deploy", model, "--version", "1")
        wait_for(lambda: max_batch_size() == 64, "the worker's max_batch_size 64 back")
