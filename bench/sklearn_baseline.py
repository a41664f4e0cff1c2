#!/usr/bin/env python3
"""scikit-learn's side of the model-quality benchmark.

Exports the datasets scikit-learn ships (breast_cancer, digits, diabetes, iris) as
train/test CSVs of one 80/20 split (random_state 0) into OUT, then trains the reference
models on the same split and prints one line per model:

    sklearn <dataset> <model> <metric> <value> <seconds>

Run by scripts/bench-models.sh; the data is generated, never committed.
"""
import sys
import time
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/sklearn-data")
out.mkdir(parents=True, exist_ok=True)


def export(name, bunch):
    x, y = bunch.data.astype(np.float64), bunch.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])
    for part, xs, ys in [("train", x_train, y_train), ("test", x_test, y_test)]:
        rows = np.column_stack([xs, ys])
        np.savetxt(out / f"{name}.{part}.csv", rows, delimiter=",", header=header, comments="", fmt="%.10g")
    return x_train, x_test, y_train, y_test


def report(dataset, model, metric, value, seconds):
    print(f"sklearn {dataset} {model} {metric} {value:.4f} {seconds:.3f}", flush=True)


def timed(estimator, x_train, y_train):
    started = time.perf_counter()
    estimator.fit(x_train, y_train)
    return time.perf_counter() - started


for name in ["breast_cancer", "iris", "digits"]:
    x_train, x_test, y_train, y_test = export(name, getattr(datasets, f"load_{name}")())
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    seconds = timed(model, x_train, y_train)
    report(name, "logistic_regression", "accuracy", accuracy_score(y_test, model.predict(x_test)), seconds)

x_train, x_test, y_train, y_test = export("diabetes", datasets.load_diabetes())
model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
seconds = timed(model, x_train, y_train)
report("diabetes", "ridge", "r2", r2_score(y_test, model.predict(x_test)), seconds)

# The digits MLP: one hidden layer of 64, Adam, batches of 200, exactly 200 epochs
# (n_iter_no_change=200 turns off scikit-learn's own early stop so both run 200).
x_train, x_test, y_train, y_test = train_test_split(*datasets.load_digits(return_X_y=True), test_size=0.2, random_state=0)
model = make_pipeline(
    StandardScaler(),
    MLPClassifier(hidden_layer_sizes=(64,), batch_size=200, max_iter=200, n_iter_no_change=200, random_state=0),
)
seconds = timed(model, x_train, y_train)
report("digits", "mlp_64", "accuracy", accuracy_score(y_test, model.predict(x_test)), seconds)
