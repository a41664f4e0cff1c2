"""Cancellation travels client -> router -> worker: when a caller gives up on a call, the
router gives up its call to the worker (drops the in-process call in `up`, resets the
HTTP/2 stream over the network), and the worker drops the request — it never answers it
and never counts it as served. Deadlines travel too, including Triton's `timeout`
request parameter. Each test acts while a call computes; the call is made long enough
for that on this machine (`slow_rows`), not by a size tuned on another."""
import os
import subprocess
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import BIN, SLOW_WIDTH, remove_work_dir, slow_rows, start_up, work_dir, write_slow_onnx

MODEL = "slow-chain"


def served(client):
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]["inference_stats"]
    return int(stats.get("success", {}).get("count", 0)), int(stats.get("fail", {}).get("count", 0))


def executions(client):
    """Computations MODEL ran to their end, answered or not."""
    return int(client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0].get("execution_count", 0))


def wait_executions(client, want, timeout=120):
    deadline = time.monotonic() + timeout
    while executions(client) < want:
        assert time.monotonic() < deadline, f"the computation never ended ({executions(client)} of {want})"
        time.sleep(0.05)


def slow_input(rows):
    x = grpcclient.InferInput("x", [rows, SLOW_WIDTH], "FP32")
    x.set_data_from_numpy(np.ones((rows, SLOW_WIDTH), dtype=np.float32))
    return x


def wait_served(client, want, timeout=60):
    """Waits until MODEL's (success, fail) counts are `want` (statistics are read after
    the answer went out, so they may trail it briefly); returns the last counts."""
    deadline = time.monotonic() + timeout
    while (now := served(client)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


@pytest.fixture(scope="module")
def router_over_the_network():
    """A second `up` whose router reaches its worker over loopback HTTP/2, as in a
    cluster, with the slow model deployed; yields the router's address."""
    work = work_dir("modelplane-network-")
    proc, addrs, env = start_up(work, ["--router-via-network"])
    slow_path = os.path.join(work, "slow.onnx")
    write_slow_onnx(slow_path)
    for args in (["models", "import", MODEL, slow_path], ["deploy", MODEL, "--version", "1"]):
        subprocess.run([BIN, *args], check=True, env=env, cwd=work, stdout=subprocess.PIPE, timeout=600)
    yield addrs["router"]
    proc.terminate()
    try:
        assert proc.wait(timeout=30) == 0, "modelplane up did not exit cleanly on SIGTERM"
    finally:
        remove_work_dir(work)


def test_a_call_the_client_cancels_is_dropped_by_the_worker_in_process(cluster):
    router, _ = cluster
    check_cancellation(router)


def test_a_call_the_client_cancels_is_dropped_by_the_worker_over_the_network(router_over_the_network):
    check_cancellation(router_over_the_network)


def check_cancellation(router):
    client = grpcclient.InferenceServerClient(router)
    rows, _ = slow_rows(router)  # its calls also show that an uncancelled call counts
    before = served(client)
    assert before[0] >= 1, "a completed call counts as served"

    started = time.monotonic()
    client.infer(MODEL, [slow_input(rows)])
    compute = time.monotonic() - started
    assert wait_served(client, (before[0] + 1, before[1])) == (before[0] + 1, before[1]), \
        "the control call is counted once"
    print(f"slow-chain computes {rows} rows for {compute:.2f}s")
    assert compute > 0.5, f"{rows} rows took only {compute:.2f}s this time; the test needs time to cancel"

    done = threading.Event()
    outcome = {}

    def callback(result, error):
        outcome["result"], outcome["error"] = result, error
        done.set()

    ran = executions(client)
    call = client.async_infer(MODEL, [slow_input(rows)], callback)
    time.sleep(compute / 4)
    assert not done.is_set(), f"the call ended before it could be cancelled: {outcome}"
    call.cancel()
    assert done.wait(30), "the cancelled call never completed on the client"
    assert outcome["result"] is None and "CANCELLED" in str(outcome["error"]), outcome
    # The worker cannot stop arithmetic already running, but it must drop the request:
    # once the arithmetic ended, and a control call after it was counted, the cancelled
    # call must not have been.
    wait_executions(client, ran + 1)
    client.infer(MODEL, [slow_input(rows)])
    assert wait_served(client, (before[0] + 2, before[1])) == (before[0] + 2, before[1]), \
        "the worker answered a call its caller had cancelled"


@pytest.mark.parametrize("path", ["in_process", "over_the_network"])
def test_tritons_timeout_parameter_is_the_requests_deadline(path, request):
    router = request.getfixturevalue("cluster")[0] if path == "in_process" else \
        request.getfixturevalue("router_over_the_network")
    client = grpcclient.InferenceServerClient(router)
    rows, compute = slow_rows(router)
    before = served(client)
    # A quarter of the time the call computes: the deadline passes while it runs, and
    # the caller is answered then, not when the arithmetic ends.
    quarter = int(compute / 4 * 1e6)  # microseconds, as Triton reads it
    started = time.monotonic()
    with pytest.raises(InferenceServerException) as late:
        client.infer(MODEL, [slow_input(rows)], timeout=quarter)
    assert "DEADLINE_EXCEEDED" in str(late.value.status()), late.value
    waited = time.monotonic() - started
    with pytest.raises(InferenceServerException) as negative:
        client.infer(MODEL, [slow_input(rows)], timeout=-5)
    assert "INVALID_ARGUMENT" in str(negative.value.status()), negative.value
    assert "microseconds" in negative.value.message(), negative.value.message()
    # A later call, started after the late one and as long, was counted; the late one
    # was not.
    client.infer(MODEL, [slow_input(rows)], timeout=600_000_000)
    assert wait_served(client, (before[0] + 1, before[1])) == (before[0] + 1, before[1]), \
        "only the request within its timeout is served"
    print(f"a {quarter} µs deadline was answered after {waited:.2f}s of a {compute:.2f}s computation")
