#!/usr/bin/env python3
"""LightGBM's and scikit-learn's side of the tree benchmark.

Exports one 80/20 split (random_state 0) of scikit-learn's breast_cancer, digits and
diabetes, and of a generated 100,000-row table with missing cells and category codes
(`table`), as train/test CSVs into OUT (an empty cell is a missing value). Then trains,
with the same settings modelplane's side uses (100 trees, 31 leaves, rate 0.1, 20 rows a
leaf, 255 bins; forests of 100 trees), LightGBM's LGBM*, scikit-learn's
HistGradientBoosting* and RandomForest*, and prints one line per model:

    <side> <dataset> <model> <metric> <value> <train_seconds> <rows_per_second_single> <rows_per_second_batch>

Run by scripts/bench-trees.sh (never in CI: LightGBM is a benchmark-only package); the
data is generated, never committed.
"""
import sys
import time
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split

import lightgbm

out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/trees-data")
out.mkdir(parents=True, exist_ok=True)


def table(rows=100_000, seed=0):
    """Numbers with 10% missing, two categorical columns (written as text, e.g. `c3`;
    LightGBM and HistGradientBoosting are told they are categorical) and a binary target
    that depends on all of them, interactions included."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    city = rng.integers(0, 8, rows)
    kind = rng.integers(0, 3, rows)
    score = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + (city % 3 == 0) * 1.5 - (kind == 2) + 0.5 * x[:, 3]
    score += rng.normal(0, 0.5, rows)
    y = (score > np.median(score)).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan
    return np.column_stack([x, city, kind]), y


CATEGORICAL = {"table": [6, 7]}


def export(name, x, y):
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])
    for part, xs, ys in [("train", x_train, y_train), ("test", x_test, y_test)]:
        with open(out / f"{name}.{part}.csv", "w") as f:
            f.write(header + "\n")
            for row, target in zip(xs, ys):
                cells = ["" if np.isnan(v) else f"c{v:.0f}" if i in CATEGORICAL.get(name, []) else f"{v:.9g}"
                         for i, v in enumerate(row)]
                f.write(",".join(cells + [f"{target:.9g}"]) + "\n")
    return x_train.astype(np.float32), x_test.astype(np.float32), y_train, y_test


def serving(model, x_test):
    """Rows per second answered one at a time (1,000 calls) and in one batch."""
    single = x_test[:1]
    started = time.perf_counter()
    for _ in range(1000):
        model.predict(single)
    per_single = 1000 / (time.perf_counter() - started)
    batch = np.resize(x_test, (max(10_000, len(x_test)), x_test.shape[1]))
    started = time.perf_counter()
    model.predict(batch)
    return per_single, len(batch) / (time.perf_counter() - started)


def run(side, dataset, name, model, data, classes, **fit):
    x_train, x_test, y_train, y_test = data
    started = time.perf_counter()
    model.fit(x_train, y_train, **fit)
    seconds = time.perf_counter() - started
    predicted = model.predict(x_test)
    metric, value = ("accuracy", accuracy_score(y_test, predicted)) if classes else ("r2", r2_score(y_test, predicted))
    single, batch = serving(model, x_test)
    print(f"{side} {dataset} {name} {metric} {value:.4f} {seconds:.3f} {single:.0f} {batch:.0f}", flush=True)


boost = dict(n_estimators=100, num_leaves=31, learning_rate=0.1, min_child_samples=20, max_bin=255,
             reg_lambda=0.0, subsample=1.0, colsample_bytree=1.0, verbose=-1, random_state=0)
hist = dict(max_iter=100, max_leaf_nodes=31, learning_rate=0.1, min_samples_leaf=20, max_bins=255,
            l2_regularization=0.0, early_stopping=False, random_state=0)
sets = {
    "breast_cancer": (datasets.load_breast_cancer(return_X_y=True), True),
    "digits": (datasets.load_digits(return_X_y=True), True),
    "diabetes": (datasets.load_diabetes(return_X_y=True), False),
    "table": (table(), True),
}
for dataset, ((x, y), classes) in sets.items():
    data = export(dataset, x.astype(np.float64), y)
    categorical = CATEGORICAL.get(dataset)
    lgb_fit = {"categorical_feature": categorical} if categorical else {}
    hist_categorical = {"categorical_features": categorical} if categorical else {}
    if classes:
        run("lightgbm", dataset, "gbdt", lightgbm.LGBMClassifier(**boost), data, True, **lgb_fit)
        run("sklearn", dataset, "gbdt", HistGradientBoostingClassifier(**hist, **hist_categorical), data, True)
        run("sklearn", dataset, "random_forest", RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=-1),
            data, True)
    else:
        run("lightgbm", dataset, "gbdt", lightgbm.LGBMRegressor(**boost), data, False)
        run("sklearn", dataset, "gbdt", HistGradientBoostingRegressor(**hist), data, False)
        run("sklearn", dataset, "random_forest", RandomForestRegressor(n_estimators=100, random_state=0, n_jobs=-1),
            data, False)
