"""Dynamic batching per deployment: `modelplane deploy --max-batch-size/--max-queue-delay-us`
puts the loaded versions under new batching settings without reloading them, Triton's
ModelConfig shows them, batches stay within them, and bad settings are refused."""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient

from conftest import ROWS


def wait_for(predicate, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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
        def by_size(s):
            return {int(b["batch_size"]): int(b["compute_infer"].get("count", 0)) for b in s.get("batch_stats", [])}
        grown = {size: count - by_size(before).get(size, 0) for size, count in by_size(after).items()}
        grown = {size: count for size, count in grown.items() if count}
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
