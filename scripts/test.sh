#!/usr/bin/env bash
# The one command that runs every test. It installs what a fresh machine lacks:
# etcd-server (Debian package, for the cluster tests) and a Python venv with tritonclient
# and onnx (for the interop test, which also builds the ONNX model it imports) and moto's
# S3 server (for the S3 blob store test). protoc is not needed: see tools/protoc.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v etcd >/dev/null 2>&1; then
  echo "== installing etcd-server (apt-get)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq etcd-server >/dev/null
fi

venv=target/interop-venv
if ! "$venv/bin/python" -c "import tritonclient.grpc, tritonclient.http, numpy, pytest, onnx, moto.server, boto3, prometheus_client" >/dev/null 2>&1; then
  echo "== creating the interop venv ($venv)"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'tritonclient[grpc,http]' numpy pytest onnx 'moto[server]' prometheus-client
fi

# A full build takes about 2 GB; CI once ran out of disk, so say what there is.
echo "== $(df -h . | awk 'NR == 2 { print $4 }') free on the disk holding target/"
echo "== cargo test"
# One build, no edits between runs: incremental caches would only take disk (gigabytes).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --locked

echo "== python interop (tritonclient against the router)"
# cargo test built target/debug/modelplane for the end-to-end tests; the interop test runs it.
MODELPLANE_BIN="$PWD/target/debug/modelplane" "$venv/bin/python" -m pytest -q tests/python
