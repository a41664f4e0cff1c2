#!/usr/bin/env bash
# Tree models' quality, training time and serving speed against LightGBM and
# scikit-learn, on one machine in one run. Makes a venv with scikit-learn and LightGBM
# (target/bench-venv; benchmark-only, never in CI), exports scikit-learn's shipped data
# sets and a generated 100k-row table with missing values as one 80/20 split to
# target/trees-data, trains the reference models, then modelplane's on the same files
# (cargo bench, release build), and prints every line with the ratios to LightGBM.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if ! "$venv/bin/python" -c "import sklearn, lightgbm" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check scikit-learn lightgbm numpy
fi
data="$PWD/target/trees-data"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
"$venv/bin/python" -W ignore bench/trees_baseline.py "$data" | tee "$results"
MODELPLANE_BENCH_DATA="$data" cargo bench --quiet -p modelplane-model --bench trees_parity | tee -a "$results"
echo
echo "ratios to LightGBM's gbdt on the same data set (train time: lower is faster; rows/s: higher is faster)"
python3 - "$results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1]) if len(line.split()) == 8]
lgb = {r[1]: r for r in rows if r[0] == "lightgbm"}
print("side dataset model metric value delta_vs_lightgbm train_time_ratio single_rows_ratio batch_rows_ratio")
for side, dataset, model, metric, value, seconds, single, batch in rows:
    ref = lgb.get(dataset)
    if ref is None:
        continue
    print(side, dataset, model, metric, value, f"{float(value) - float(ref[4]):+.4f}",
          f"{float(seconds) / float(ref[5]):.2f}", f"{float(single) / float(ref[6]):.2f}",
          f"{float(batch) / float(ref[7]):.2f}")
PY
