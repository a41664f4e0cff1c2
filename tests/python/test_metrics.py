"""Prometheus metrics of `modelplane up` at GET /metrics on the REST port, read with the
official Prometheus Python client's parser (as a scraper would read them)."""
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROWS

INFER = "/inference.GRPCInferenceService/ModelInfer"


def scrape(rest):
    with urllib.request.urlopen(f"{rest}/metrics", timeout=20) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families, family, sample_name, **labels):
    """Sum of the samples called `sample_name` in `family` whose labels include `labels`."""
    if family not in families:
        return 0.0
    return sum(s.value for s in families[family].samples
               if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_every_request_by_role_model_version_and_code(cluster, rest):
    router, _ = cluster
    client = grpcclient.InferenceServerClient(router)
    before = scrape(rest)
    for _ in range(5):
        houses = grpcclient.InferInput("input", list(ROWS.shape), "FP32")
        houses.set_data_from_numpy(ROWS)
        client.infer("houses", [houses])
    missing = grpcclient.InferInput("input", [1, 3], "FP32")
    missing.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
    try:
        client.infer("houses", [missing], model_version="99")
        raise AssertionError("version 99 does not exist")
    except grpcclient.InferenceServerException as err:
        assert "StatusCode.NOT_FOUND" in str(err.status())
    after = scrape(rest)

    def delta(family, sample, **labels):
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    # Types as Prometheus reads them (the parser drops the _total suffix from the name).
    assert after["modelplane_grpc_requests"].type == "counter"
    assert after["modelplane_grpc_request_duration_seconds"].type == "histogram"
    assert after["modelplane_worker_batch_rows"].type == "histogram"
    assert after["modelplane_worker_batcher_requests"].type == "gauge"
    assert after["modelplane_grpc_requests"].documentation, "counters carry help text"

    # Router and worker each count the five answered calls; the refused one only reached
    # the router.
    calls = "modelplane_grpc_requests_total"
    assert delta("modelplane_grpc_requests", calls, role="router", method=INFER, code="OK") == 5
    assert delta("modelplane_grpc_requests", calls, role="worker", method=INFER, code="OK") == 5
    assert delta("modelplane_grpc_requests", calls, role="router", method=INFER, code="NOT_FOUND") == 1
    timed = "modelplane_grpc_request_duration_seconds_count"
    assert delta("modelplane_grpc_request_duration_seconds", timed, role="router", method=INFER) == 6

    routed = "modelplane_router_requests_total"
    assert delta("modelplane_router_requests", routed, model="houses", version="1", code="OK") == 5
    assert delta("modelplane_router_requests", routed, model="houses", version="", code="NOT_FOUND") == 1

    # The worker's per-version statistics: 5 requests of 3 rows each.
    assert delta("modelplane_worker_requests", "modelplane_worker_requests_total",
                 model="houses", version="1", outcome="success") == 5
    assert delta("modelplane_worker_inference_rows", "modelplane_worker_inference_rows_total",
                 model="houses", version="1") == 15
    assert delta("modelplane_worker_batch_rows", "modelplane_worker_batch_rows_sum",
                 model="houses", version="1") == 15
    # The histogram's buckets hold every execution: each was a whole 3-row request.
    executions = delta("modelplane_worker_batch_rows", "modelplane_worker_batch_rows_count",
                       model="houses", version="1")
    assert 1 <= executions <= 5
    assert delta("modelplane_worker_batch_rows", "modelplane_worker_batch_rows_bucket",
                 model="houses", version="1", le="2.0") == 0
    assert value(after, "modelplane_worker_batcher_requests", "modelplane_worker_batcher_requests",
                 model="houses", version="1") == 0
