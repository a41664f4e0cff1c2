#!/usr/bin/env bash
# The one command that runs every test. It installs what a fresh machine lacks:
# etcd-server (Debian package, for the cluster tests), kubectl (kubernetes-client, for the
# Kubernetes manifest test), python3-venv where the system splits it out, and a Python venv
# pinned by tests/python/requirements.txt with tritonclient and onnx (for the interop test,
# which also builds the ONNX model it imports), moto's S3 server (for the S3 blob store
# test), kubernetes-validate (for the manifest test) and scikit-learn, skl2onnx,
# onnxmltools, xgboost-cpu, lightgbm and onnxruntime (for the ONNX conformance matrix). protoc is not needed: see
# tools/protoc.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v etcd >/dev/null 2>&1; then
  echo "== installing etcd-server (apt-get)"
  apt_install etcd-server
fi
# kubectl renders the Kubernetes manifests for tests/python/test_deploy.py (`kubectl kustomize`).
if ! command -v kubectl >/dev/null 2>&1; then
  echo "== installing kubernetes-client (apt-get)"
  apt_install kubernetes-client
fi
# Debian and Ubuntu ship `python3 -m venv` in a package of its own.
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  echo "== installing python3-venv (apt-get)"
  apt_install python3-venv
fi

# The venv is made anew whenever the pinned requirements change.
venv=target/interop-venv
requirements=tests/python/requirements.txt
stamp="$venv/requirements.sha256"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || ! "$venv/bin/python" -c "import tritonclient.grpc" >/dev/null 2>&1; then
  echo "== creating the interop venv ($venv) from $requirements"
  rm -rf "$venv"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" > "$stamp"
fi

# A full build takes about 2 GB; CI once ran out of disk, so say what there is.
echo "== $(df -h . | awk 'NR == 2 { print $4 }') free on the disk holding target/"
echo "== structure: no unused dependencies; the router serves no model code"
python3 scripts/check-deps.py
# The router forwards bytes: it must not link tract, ndarray or the worker (issue 21).
if cargo tree --locked -p modelplane-router -e normal --prefix none | grep -E '^(tract-|ndarray |modelplane-(worker|model|onnx) )'; then
  echo "modelplane-router depends on the crates above; it must need only proto, service, store and kserve" >&2
  exit 1
fi

echo "== cargo test"
# One build, no edits between runs: incremental caches would only take disk (gigabytes).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --locked

echo "== python interop (tritonclient against the router)"
# cargo test built target/debug/modelplane for the end-to-end tests; the interop test runs it.
MODELPLANE_BIN="$PWD/target/debug/modelplane" "$venv/bin/python" -m pytest -q tests/python
