#!/usr/bin/env python3
"""Alias flips: how long after `modelplane alias set` predictions come from the new version,
on `modelplane up` (embedded store), idle and under a steady load of 4 gRPC clients.

Each flip goes to a version that is not loaded (the one flipped away from unloads after its
2 s grace, so the script waits 3 s between flips): the time includes loading and warming it
up, as for a newly trained version. Measured from just before the CLI is started (so it
includes starting the CLI and its RPC) to the first answer the poller gets from the new
version; the poller asks every millisecond. The tests print the same figure once
("alias flip took ..."), but do not judge it: this is where it is measured.

    target/interop-venv/bin/python scripts/bench-flip.py [FLIPS]    (default 10 per phase)

Needs tritonclient (the interop venv that ./scripts/test.sh makes); uses
target/release/modelplane, or $MODELPLANE_BIN.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "python"))
from conftest import make_data, start_up  # noqa: E402

BIN = os.environ.get("MODELPLANE_BIN", os.path.join(REPO, "target", "release", "modelplane"))
ROW = np.array([[120, 3, 10]], dtype=np.float32)


def served_version(client):
    x = grpcclient.InferInput("input", list(ROW.shape), "FP32")
    x.set_data_from_numpy(ROW)
    return client.infer("houses", [x], model_version="production").get_response().model_version


def load(router, stop, errors, counts):
    client = grpcclient.InferenceServerClient(router)
    while not stop.is_set():
        try:
            served_version(client)
            counts.append(1)
        except Exception as err:  # noqa: BLE001 - a bench counts every failure
            errors.append(str(err))


def flips(cli, router, count):
    client = grpcclient.InferenceServerClient(router)
    took = []
    target = 2
    for _ in range(count):
        time.sleep(3)  # past the 2 s unload grace: the target version is not loaded
        started = time.monotonic()
        cli("alias", "set", "houses", "production", str(target))
        while served_version(client) != str(target):
            time.sleep(0.001)
        took.append(time.monotonic() - started)
        target = 3 - target
    return took


def summary(name, took):
    took = sorted(took)
    p90 = took[min(len(took) - 1, int(round(0.9 * (len(took) - 1))))]
    return f"| {name} | {len(took)} | {statistics.median(took) * 1000:.0f} | {p90 * 1000:.0f} | {took[-1] * 1000:.0f} |"


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "modelplane"], cwd=REPO, check=True)
    work = tempfile.mkdtemp(prefix="modelplane-flip-")
    try:
        proc, addrs, env = start_up(work, bin=BIN)

        def cli(*args):
            subprocess.run([BIN, *args], check=True, env=env, cwd=work, stdout=subprocess.DEVNULL, timeout=600)

        make_data(work)
        cli("datasets", "upload", "houses.csv")
        for epochs in ("30", "2"):
            cli("train", "houses", "--dataset", "houses", "--target", "price", "--kind", "linear", "--epochs", epochs)
        cli("alias", "set", "houses", "production", "1")
        cli("deploy", "houses", "--alias", "production")
        router = addrs["router"]
        client = grpcclient.InferenceServerClient(router)
        deadline = time.monotonic() + 60
        while not client.is_model_ready("houses"):
            assert time.monotonic() < deadline, "houses never became ready"
            time.sleep(0.05)

        idle = flips(cli, router, count)
        stop, errors, counts = threading.Event(), [], []
        clients = [threading.Thread(target=load, args=(router, stop, errors, counts)) for _ in range(4)]
        for thread in clients:
            thread.start()
        loaded = flips(cli, router, count)
        stop.set()
        for thread in clients:
            thread.join()
        print("| phase | flips | p50 ms | p90 ms | max ms |")
        print("| --- | --- | --- | --- | --- |")
        print(summary("idle", idle))
        print(summary("4 clients sending", loaded))
        print(f"\nrequests served during the loaded flips: {len(counts)}, failed: {len(errors)}")
        if errors:
            print("first failure:", errors[0])
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
