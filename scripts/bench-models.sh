#!/usr/bin/env bash
# Model quality and training speed against scikit-learn, on one machine in one run.
# Makes a venv with scikit-learn (target/bench-venv), exports the datasets scikit-learn
# ships as one 80/20 split (random_state 0) to target/sklearn-data, trains the reference
# models there, then trains modelplane's on the same files (cargo bench, release build).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if ! "$venv/bin/python" -c "import sklearn" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check scikit-learn numpy
fi
data="$PWD/target/sklearn-data"
echo "side dataset model metric value train_seconds"
"$venv/bin/python" -W ignore bench/sklearn_baseline.py "$data"
MODELPLANE_BENCH_DATA="$data" cargo bench --quiet -p modelplane-model --bench sklearn_parity
