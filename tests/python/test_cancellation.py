"""Cancellation travels client -> router -> worker: when a caller gives up on a call, the
router resets its call to the worker, and the worker drops the request — it never
answers it and never counts it as served."""
import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient

from conftest import SLOW_ROWS, SLOW_WIDTH

MODEL = "slow-chain"


def served(client):
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]["inference_stats"]
    return int(stats.get("success", {}).get("count", 0)), int(stats.get("fail", {}).get("count", 0))


def slow_input():
    x = grpcclient.InferInput("x", [SLOW_ROWS, SLOW_WIDTH], "FP32")
    x.set_data_from_numpy(np.ones((SLOW_ROWS, SLOW_WIDTH), dtype=np.float32))
    return x


def test_a_call_the_client_cancels_is_dropped_by_the_worker(cluster):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    client.infer(MODEL, [slow_input()])  # loads caches; also shows an uncancelled call counts
    before = served(client)
    assert before[0] >= 1, "a completed call counts as served"

    started = time.monotonic()
    client.infer(MODEL, [slow_input()])
    compute = time.monotonic() - started
    assert served(client) == (before[0] + 1, before[1]), "the control call is counted once"
    print(f"slow-chain computes for {compute:.2f}s")
    assert compute > 0.5, f"the slow model took only {compute:.2f}s; the test needs time to cancel"

    done = threading.Event()
    outcome = {}

    def callback(result, error):
        outcome["result"], outcome["error"] = result, error
        done.set()

    call = client.async_infer(MODEL, [slow_input()], callback)
    time.sleep(min(0.2, compute / 4))
    call.cancel()
    assert done.wait(10), "the cancelled call never completed on the client"
    assert outcome["result"] is None and "CANCELLED" in str(outcome["error"]), outcome
    # The worker cannot stop arithmetic already running, but it must drop the request:
    # wait past the time the computation takes, then it must not have been served.
    time.sleep(compute * 2 + 0.5)
    assert served(client) == (before[0] + 1, before[1]), "the worker answered a call its caller had cancelled"
