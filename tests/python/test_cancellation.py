"""Cancellation travels client -> router -> worker: when a caller gives up on a call, the
router gives up its call to the worker (drops the in-process call in `up`, resets the
HTTP/2 stream over the network), and the worker drops the request — it never answers it
and never counts it as served. Deadlines travel too, including Triton's `timeout`
request parameter."""
import os
import subprocess
import tempfile
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import BIN, SLOW_ROWS, SLOW_WIDTH, start_modelplane, write_slow_onnx

MODEL = "slow-chain"


def served(client):
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]["inference_stats"]
    return int(stats.get("success", {}).get("count", 0)), int(stats.get("fail", {}).get("count", 0))


def slow_input():
    x = grpcclient.InferInput("x", [SLOW_ROWS, SLOW_WIDTH], "FP32")
    x.set_data_from_numpy(np.ones((SLOW_ROWS, SLOW_WIDTH), dtype=np.float32))
    return x


@pytest.fixture(scope="module")
def router_over_the_network():
    """A second `up` whose router reaches its worker over loopback HTTP/2, as in a
    cluster, with the slow model deployed; yields the router's address."""
    work = tempfile.mkdtemp(prefix="modelplane-network-")
    proc, addrs = start_modelplane(
        ["up", "--router-via-network", "--data-dir", os.path.join(work, "data"), "--grpc-port", "0",
         "--http-port", "0", "--registry-port", "0", "--trainer-port", "0", "--worker-port", "0"],
        os.environ, 5, os.path.join(work, "up.log"))
    env = dict(os.environ, MODELPLANE_REGISTRY=addrs["registry"], MODELPLANE_ROUTER=addrs["router"])
    slow_path = os.path.join(work, "slow.onnx")
    write_slow_onnx(slow_path)
    for args in (["models", "import", MODEL, slow_path], ["deploy", MODEL, "--version", "1"]):
        subprocess.run([BIN, *args], check=True, env=env, cwd=work, stdout=subprocess.PIPE)
    yield addrs["router"]
    proc.terminate()
    assert proc.wait(timeout=20) == 0, "modelplane up did not exit cleanly on SIGTERM"


def test_a_call_the_client_cancels_is_dropped_by_the_worker_in_process(cluster):
    router, _ = cluster
    check_cancellation(router)


def test_a_call_the_client_cancels_is_dropped_by_the_worker_over_the_network(router_over_the_network):
    check_cancellation(router_over_the_network)


def check_cancellation(router):
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


@pytest.mark.parametrize("path", ["in_process", "over_the_network"])
def test_tritons_timeout_parameter_is_the_requests_deadline(path, request):
    router = request.getfixturevalue("cluster")[0] if path == "in_process" else \
        request.getfixturevalue("router_over_the_network")
    client = grpcclient.InferenceServerClient(router)
    before = served(client)
    with pytest.raises(InferenceServerException) as late:
        client.infer(MODEL, [slow_input()], timeout=1)  # microseconds, as Triton reads it
    assert "DEADLINE_EXCEEDED" in str(late.value.status()), late.value
    with pytest.raises(InferenceServerException) as negative:
        client.infer(MODEL, [slow_input()], timeout=-5)
    assert "INVALID_ARGUMENT" in str(negative.value.status()), negative.value
    assert "microseconds" in negative.value.message(), negative.value.message()
    assert served(client) == before, "a request refused for its timeout reached the model"
    client.infer(MODEL, [slow_input()], timeout=60_000_000)
    assert served(client) == (before[0] + 1, before[1]), "a request within its timeout is served"
