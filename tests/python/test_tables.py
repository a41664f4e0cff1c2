"""Tables as they come, through the CLI and tritonclient on the shared cluster: a CSV
with empty cells trains gradient-boosted trees, a random forest, a decision tree and a
linear SVM; each deploys and answers raw rows (NaN for a missing value) as the labels
say; `models versions` shows the feature importances and `--show-tree` the tree; bad
parameters are refused by name. Categorical text columns train and serve through gRPC,
REST JSON and tritonclient.http, and trees split on sets of categories."""
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ROWS = 1200


def table(path, rows=ROWS, seed=4):
    """`inside` is whether (a, b) lies in a circle, or — where `a` is missing — always
    "in"; `noise` tells nothing."""
    rng = np.random.default_rng(seed)
    a, b, noise = rng.uniform(-1, 1, rows), rng.uniform(-1, 1, rows), rng.uniform(0, 1, rows)
    missing = rng.random(rows) < 0.15
    inside = np.where(missing | (a * a + b * b < 0.5), "in", "out")
    with open(path, "w") as f:
        f.write("a,b,noise,inside\n")
        for i in range(rows):
            f.write(f"{'' if missing[i] else f'{a[i]:.5f}'},{b[i]:.5f},{noise[i]:.5f},{inside[i]}\n")
    return np.column_stack([np.where(missing, np.nan, a), b, noise]).astype(np.float32), inside


@pytest.fixture(scope="module")
def trained(cluster, cli, tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "circle.csv"
    x, labels = table(path)
    cli("datasets", "upload", str(path), "--name", "circle")
    for model, kind, params in [("circle-gbdt", "gbdt", ["--param", "n_trees=60"]),
                                ("circle-forest", "random_forest", ["--param", "n_trees=40"]),
                                ("circle-tree", "decision_tree", ["--param", "max_depth=6"]),
                                ("circle-svm", "linear_svm", [])]:
        cli("train", model, "--dataset", "circle", "--target", "inside", "--kind", kind, *params)
        cli("deploy", model, "--version", "1")
    return cluster[0], x, labels


def infer(router, model, rows):
    tensor = grpcclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    return grpcclient.InferenceServerClient(router).infer(model, [tensor])


@pytest.mark.parametrize("model", ["circle-gbdt", "circle-forest", "circle-tree"])
def test_trees_answer_raw_rows_with_missing_values(trained, model):
    router, x, labels = trained
    result = infer(router, model, x)
    predicted = result.as_numpy("label").astype(str)
    assert (predicted == labels).mean() > 0.93, model
    assert (predicted[np.isnan(x[:, 0])] == "in").all(), "a missing a means in, and the trees learned it"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (ROWS, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_a_linear_svm_answers_margins_and_no_line_draws_a_circle(trained):
    router, x, labels = trained
    result = infer(router, "circle-svm", x)
    assert result.as_numpy("scores").shape == (ROWS, 1)
    accuracy = (result.as_numpy("label").astype(str) == labels).mean()
    assert 0.4 < accuracy < 0.9, f"a linear boundary cannot fit a circle: {accuracy}"


def test_versions_show_importances_and_the_tree(trained, cli):
    listed = cli("models", "versions", "circle-gbdt").stdout
    importances = listed.split("feature importance (gain share): ")[1].split()
    shares = dict(item.split("=") for item in importances)
    assert set(shares) == {"a", "b", "noise"} and float(shares["noise"]) < float(shares["a"]), listed
    assert abs(sum(map(float, shares.values())) - 1.0) < 0.01
    tree = cli("models", "versions", "circle-tree", "--show-tree").stdout
    assert "if a <= " in tree and "(or missing)" in tree and "-> in (in: " in tree, tree
    deepest = max(len(line) - len(line.lstrip()) for line in tree.splitlines() if line.strip().startswith("->"))
    assert deepest <= 12, "max_depth=6: at most six levels of two spaces"


def test_tree_parameters_are_checked_at_submission(trained, cli):
    for kind, param, named in [("gbdt", "epochs=5", "epochs"), ("random_forest", "max_bins=500", "max_bins"),
                               ("decision_tree", "n_trees=3", "one tree"), ("linear", "n_trees=10", "tree kinds")]:
        refused = cli("train", "refused", "--dataset", "circle", "--target", "inside", "--kind", kind,
                      "--param", param, check=False)
        assert refused.returncode != 0 and named in refused.stderr and "InvalidArgument" in refused.stderr, refused.stderr


def colors_table(path, rows=800, seed=5):
    """`y` passes when x plus its color's bonus exceeds 0.9 (no line through codes
    separates the colors); some colors are missing (`NA`, as pandas writes them)."""
    rng = np.random.default_rng(seed)
    bonus = {"red": 0.6, "blue": 0.0, "green": 0.3, "black": -0.3}
    x = rng.uniform(0, 1, rows)
    colors = rng.choice(list(bonus), rows)
    y = np.array(["yes" if x[i] + bonus[colors[i]] > 0.9 else "no" for i in range(rows)])
    with open(path, "w") as f:
        f.write("x,color,y\n")
        for i in range(rows):
            f.write(f"{x[i]:.5f},{'NA' if i % 17 == 0 else colors[i]},{y[i]}\n")


@pytest.mark.parametrize("kind", ["gbdt", "logistic"])
def test_a_categorical_column_trains_and_serves_as_text(trained, cli, rest, tmp_path, kind):
    router = trained[0]
    path = tmp_path / "colors.csv"
    colors_table(path)
    cli("datasets", "upload", str(path), "--name", "colors")
    model = f"colors-{kind}"
    cli("train", model, "--dataset", "colors", "--target", "y", "--kind", kind)
    cli("deploy", model, "--version", "1")
    metadata = grpcclient.InferenceServerClient(router).get_model_metadata(model, as_json=True)
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("input", "FP32", ["-1", "1"]), ("categories", "BYTES", ["-1", "1"])]
    numbers = grpcclient.InferInput("input", [4, 1], "FP32")
    numbers.set_data_from_numpy(np.array([[0.4], [0.4], [0.95], [0.5]], np.float32))
    colors = grpcclient.InferInput("categories", [4, 1], "BYTES")
    colors.set_data_from_numpy(np.array([["red"], ["blue"], ["blue"], ["purple"]], dtype=object))
    result = grpcclient.InferenceServerClient(router).infer(model, [numbers, colors])
    labels = result.as_numpy("label").astype(str)
    assert list(labels[:3]) == ["yes", "no", "yes"], labels
    assert np.isfinite(result.as_numpy("probabilities")).all(), "an unseen color still gets an answer"
    # `modelplane predict` takes the same rows as JSON: numbers to `input`, strings to
    # `categories`.
    rows = tmp_path / "rows.json"
    rows.write_text('[[0.4, "red"], [0.4, "blue"]]')
    printed = json.loads(cli("predict", model, "--input", str(rows)).stdout)
    label = next(o for o in printed["outputs"] if o["name"] == "label")
    assert label["data"] == ["yes", "no"], printed
    rows.write_text('[[0.4, 0.5]]')
    refused = cli("predict", model, "--input", str(rows), check=False)
    assert refused.returncode != 0 and "1 numbers and 1 strings" in refused.stderr, refused.stderr
    if kind == "gbdt":
        # Trees split on sets of colors, and say so.
        tree = cli("models", "versions", model, "--show-tree").stdout
        assert "if color in {" in tree, tree
    # The numeric input alone is refused, naming both inputs.
    with pytest.raises(Exception, match="categories"):
        grpcclient.InferenceServerClient(router).infer(model, [numbers])
    # The same rows over REST: plain JSON as curl sends it (a 2-D BYTES tensor of
    # strings, nested), then tritonclient.http (binary tensors).
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 1], "data": [[0.4], [0.4], [0.95], [0.5]]},
                       {"name": "categories", "datatype": "BYTES", "shape": [4, 1],
                        "data": [["red"], ["blue"], ["blue"], ["purple"]]}],
               "outputs": [{"name": "label"}]}
    request = urllib.request.Request(f"{rest}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        answer = json.loads(response.read())
    assert answer["outputs"][0]["shape"] == [4] and answer["outputs"][0]["data"][:3] == ["yes", "no", "yes"], answer
    body["inputs"][1]["shape"] = [4, 2]
    request = urllib.request.Request(f"{rest}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=20)
    assert refused.value.code == 400 and "categories" in refused.value.read().decode()
    http = httpclient.InferenceServerClient(rest.removeprefix("http://"))
    http_numbers = httpclient.InferInput("input", [4, 1], "FP32")
    http_numbers.set_data_from_numpy(np.array([[0.4], [0.4], [0.95], [0.5]], np.float32))
    http_colors = httpclient.InferInput("categories", [4, 1], "BYTES")
    http_colors.set_data_from_numpy(np.array([["red"], ["blue"], ["blue"], ["purple"]], dtype=object))
    labels = http.infer(model, [http_numbers, http_colors]).as_numpy("label").astype(str)
    assert list(labels[:3]) == ["yes", "no", "yes"], labels


def waves_and_classes(tmp_path, rows=600, seed=6):
    """A regression table (`y = sin(3a) + b²`, some `a` missing) and a three-class one."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-1, 1, rows), rng.uniform(-1, 1, rows)
    missing = rng.random(rows) < 0.1
    y = np.sin(3 * a) + b * b
    classes = np.where(a > 0.3, "right", np.where(b > 0, "top", "bottom"))
    for name, target in [("waves", y), ("thirds", classes)]:
        with open(tmp_path / f"{name}.csv", "w") as f:
            f.write("a,b,y\n")
            for i in range(rows):
                value = f"{target[i]:.6f}" if name == "waves" else target[i]
                f.write(f"{'' if missing[i] else f'{a[i]:.5f}'},{b[i]:.5f},{value}\n")
    return np.column_stack([np.where(missing, np.nan, a), b]).astype(np.float32)


def test_tree_kinds_export_to_onnx_that_answers_as_served(trained, cli, tmp_path):
    """`models export` writes an ONNX graph whose answers in onnxruntime equal the served
    native model's (labels equal, values within 1e-5), and which `models import` serves
    back the same way."""
    import onnxruntime
    router, x, _ = trained
    x2 = waves_and_classes(tmp_path)
    for name in ["waves", "thirds"]:
        cli("datasets", "upload", str(tmp_path / f"{name}.csv"), "--name", name)
    cli("train", "waves-gbdt", "--dataset", "waves", "--target", "y", "--kind", "gbdt", "--param", "n_trees=40")
    cli("train", "thirds-gbdt", "--dataset", "thirds", "--target", "y", "--kind", "gbdt", "--param", "n_trees=30")
    cli("train", "waves-forest", "--dataset", "waves", "--target", "y", "--kind", "random_forest",
        "--param", "n_trees=20")
    cases = [("circle-gbdt", x), ("circle-forest", x), ("circle-tree", x),
             ("waves-gbdt", x2), ("thirds-gbdt", x2), ("waves-forest", x2)]
    for model, rows in cases:
        if not model.startswith("circle"):
            cli("deploy", model, "--version", "1")
        path = tmp_path / f"{model}.onnx"
        printed = cli("models", "export", model, "1", "--format", "onnx", "-o", str(path)).stdout
        assert "bytes of ONNX written" in printed, printed
        session = onnxruntime.InferenceSession(str(path))
        assert [i.name for i in session.get_inputs()] == ["input"]
        exported = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": rows})))
        served = infer(router, model, rows)
        for output, value in exported.items():
            native = served.as_numpy(output)
            if value.dtype == object:
                assert (value.astype(str) == native.astype(str)).all(), (model, output)
            else:
                np.testing.assert_allclose(value, native, rtol=1e-5, atol=1e-5, err_msg=f"{model} {output}")
        imported = f"{model}-onnx"
        cli("models", "import", imported, str(path))
        cli("deploy", imported, "--version", "1")
        again = infer(router, imported, rows)
        for output, value in exported.items():
            if value.dtype == object:
                assert (again.as_numpy(output).astype(str) == value.astype(str)).all(), (imported, output)
            else:
                np.testing.assert_allclose(again.as_numpy(output), value, rtol=1e-5, atol=1e-5, err_msg=imported)
    # Trees over a text column: opset 5's TreeEnsemble with category sets, the strings
    # coded by a LabelEncoder per column.
    colors_table(tmp_path / "colors.csv")
    cli("datasets", "upload", str(tmp_path / "colors.csv"), "--name", "colors-export")
    numbers = np.array([[0.4], [0.4], [0.95], [0.5], [0.7]], np.float32)
    colors = np.array([["red"], ["blue"], ["blue"], ["purple"], ["NA"]], dtype=object)
    for kind in ["gbdt", "random_forest"]:
        model = f"colors-export-{kind}"
        cli("train", model, "--dataset", "colors-export", "--target", "y", "--kind", kind, "--param", "n_trees=20")
        cli("deploy", model, "--version", "1")
        path = tmp_path / f"{model}.onnx"
        cli("models", "export", model, "1", "-o", str(path))
        session = onnxruntime.InferenceSession(str(path))
        exported = dict(zip([o.name for o in session.get_outputs()],
                            session.run(None, {"input": numbers, "categories": colors})))
        tensors = [grpcclient.InferInput("input", [5, 1], "FP32"), grpcclient.InferInput("categories", [5, 1], "BYTES")]
        tensors[0].set_data_from_numpy(numbers)
        tensors[1].set_data_from_numpy(colors)
        served = grpcclient.InferenceServerClient(router).infer(model, tensors)
        assert (exported["label"].astype(str) == served.as_numpy("label").astype(str)).all(), model
        np.testing.assert_allclose(exported["probabilities"], served.as_numpy("probabilities"), rtol=1e-5, atol=1e-5,
                                   err_msg=model)
        cli("models", "import", f"{model}-onnx", str(path))
        cli("deploy", f"{model}-onnx", "--version", "1")
        again = grpcclient.InferenceServerClient(router).infer(f"{model}-onnx", tensors)
        np.testing.assert_allclose(again.as_numpy("probabilities"), exported["probabilities"], rtol=1e-5, atol=1e-5)
    refused = cli("models", "export", "circle-svm", "1", "-o", str(tmp_path / "no.onnx"), check=False)
    assert refused.returncode != 0 and "not supported yet" in refused.stderr, refused.stderr
