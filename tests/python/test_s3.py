"""S3-compatible blob store: `modelplane up --blob-store s3://bucket/prefix` against moto's
S3 server (a real HTTP S3 endpoint, installed from PyPI as `moto[server]`).

Trains, deploys and predicts with every blob in the bucket and none on local disk, then
checks what a user of a shared bucket relies on: objects named by their sha256, a
corrupted object refused with DATA_LOSS, orphans swept at the next start, and a wrong
bucket stopping the registry before it listens.

Each test that needs a trained `up` has one on a prefix of its own, so no test depends
on another having run, or not, before it.
"""
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import boto3
import numpy as np
import pytest

from conftest import BIN, clean_env, expected, make_data, remove_work_dir, start_modelplane, start_up, work_dir

BUCKET = "models"
PREFIX = "team-a/blobs"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "modelplane did not exit cleanly on SIGTERM"


@pytest.fixture(scope="module")
def s3():
    port = free_port()
    work = work_dir("modelplane-s3-")
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "moto.log"), "w"), env=clean_env())
    endpoint = f"http://127.0.0.1:{port}"
    env = clean_env(AWS_ENDPOINT=endpoint, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
                    AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    deadline = time.time() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    yield client, env, work
    moto.terminate()
    moto.wait(timeout=30)
    remove_work_dir(work)


def keys(client, kind, prefix=PREFIX):
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/{kind}/")
    return sorted(obj["Key"].rsplit("/", 1)[1] for obj in listed.get("Contents", []))


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


ROW = [120, 3, 10]


def start_trained(s3, prefix):
    """`modelplane up` on `prefix` of the bucket, in a directory of its own, with one
    model trained, deployed and answering; returns (work, cli, prediction, process)."""
    _, env, top = s3
    work = os.path.join(top, prefix.replace("/", "-"))
    os.makedirs(work)
    proc, _, cli_env = start_up(work, ["--blob-store", f"s3://{BUCKET}/{prefix}"], env)

    def cli(*args, check=True):
        return subprocess.run([BIN, *args], check=check, env=cli_env, cwd=work, capture_output=True, text=True,
                              timeout=600)

    make_data(work)
    cli("datasets", "upload", "houses.csv")
    cli("train", "houses", "--dataset", "houses", "--target", "price", "--kind", "linear", "--epochs", "30")
    cli("deploy", "houses", "--version", "1")
    with open(os.path.join(work, "row.json"), "w") as f:
        json.dump(ROW, f)
    prediction = cli("predict", "houses", "--input", "row.json").stdout
    return work, cli, prediction, proc


@pytest.fixture(scope="module")
def trained(s3):
    work, cli, prediction, proc = start_trained(s3, PREFIX)
    yield s3[0], s3[1], work, cli, prediction, proc
    if proc.poll() is None:
        stop(proc)


def test_blobs_live_in_the_bucket_under_their_sha256(trained):
    client, _, work, cli, prediction, _ = trained
    assert keys(client, "datasets") == [sha256_file(os.path.join(work, "houses.csv"))]
    artifact = os.path.join(work, "houses-v1.safetensors")
    cli("models", "download", "houses", "1", "--output", artifact)
    assert keys(client, "artifacts") == [sha256_file(artifact)]
    assert not os.path.exists(os.path.join(work, "data", "blobs")), "nothing was written to local blobs"
    # The worker served the model whose artifact came from S3: the prediction is the
    # artifact's own, computed here from its tensors.
    served = json.loads(prediction)["outputs"][0]["data"]
    want = expected(artifact, np.array([ROW], dtype=np.float32)).ravel()
    np.testing.assert_allclose(served, want, rtol=1e-4)


def test_a_corrupted_object_is_refused_with_data_loss(trained):
    client, _, _, cli, _, _ = trained
    (sha,) = keys(client, "artifacts")
    key = f"{PREFIX}/artifacts/{sha}"
    original = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        failed = cli("models", "download", "houses", "1", "--output", "corrupt.bin", check=False)
        assert failed.returncode != 0
        assert "DataLoss" in failed.stderr and sha in failed.stderr, failed.stderr
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=original)
    assert cli("models", "download", "houses", "1", "--output", "restored.bin").returncode == 0


def test_a_restart_sweeps_orphans_and_keeps_referenced_blobs(s3):
    client, env, _ = s3
    prefix = "team-b/blobs"
    work, _, _, up = start_trained(s3, prefix)
    stop(up)
    orphan = hashlib.sha256(b"left by a crash").hexdigest()
    referenced = keys(client, "artifacts", prefix)
    assert len(referenced) == 1, referenced
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/artifacts/{orphan}", Body=b"left by a crash")
    registry, addrs = start_modelplane(["registry", "--store", os.path.join(work, "data", "store.redb"), "--listen",
                                        "127.0.0.1:0", "--blob-store", f"s3://{BUCKET}/{prefix}",
                                        "--orphan-grace-secs", "0"],
                                       env, 1, os.path.join(work, "registry.log"))
    try:
        # The sweep runs before the registry answers its first request.
        downloaded = subprocess.run([BIN, "models", "download", "houses", "1", "--output", "after.bin",
                                     "--registry", addrs["registry"]],
                                    env=dict(env, MODELPLANE_DATA_DIR=os.path.join(work, "data")), cwd=work,
                                    capture_output=True,
                                    timeout=600)
        assert downloaded.returncode == 0, downloaded.stderr
        assert keys(client, "artifacts", prefix) == referenced, "the orphan went, the referenced blob stayed"
        assert len(keys(client, "datasets", prefix)) == 1
        assert sha256_file(os.path.join(work, "after.bin")) == referenced[0]
    finally:
        stop(registry)


def test_a_missing_bucket_stops_the_registry_before_it_listens(s3):
    _, env, work = s3
    proc = subprocess.run([BIN, "registry", "--store", os.path.join(work, "other.redb"), "--listen", "127.0.0.1:0",
                           "--blob-store", "s3://no-such-bucket"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "listening" not in proc.stdout
    assert "no-such-bucket" in proc.stderr, proc.stderr
