"""The models scikit-learn, XGBoost and LightGBM users export to ONNX, trained on
scikit-learn's shipped data sets and a generated table with categorical and missing
values, exported as their users do (skl2onnx, onnxmltools; `zipmap=False`) — for the
conformance test, which serves each through modelplane and compares with onnxruntime.

Each case gives the graph and its held-out inputs as `{input name: numpy array}`."""
from dataclasses import dataclass

import numpy as np


@dataclass
class Case:
    name: str
    graph: bytes  # the serialized ONNX model
    inputs: dict  # input name -> held-out rows (numpy)


def split(X, y, seed=0):
    """scikit-learn's 80/20 split, fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.2, random_state=seed)


def mixed_table(rows=600, seed=0):
    """A table as it comes: three numeric columns with missing cells, two text columns,
    and a binary target."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    size = rng.normal(50, 15, rows)
    age = rng.uniform(0, 40, rows)
    rooms = rng.integers(1, 7, rows).astype(float)
    city = rng.choice(["lyon", "nantes", "paris", "lille"], rows)
    kind = rng.choice(["flat", "house"], rows, p=[0.7, 0.3])
    score = size / 15 - age / 10 + rooms / 2 + (city == "paris") * 2 - (kind == "flat") + rng.normal(0, 1, rows)
    y = (score > np.median(score)).astype(np.int64)
    for column in (size, age, rooms):
        column[rng.random(rows) < 0.1] = np.nan
    frame = pd.DataFrame({"size": size, "age": age, "rooms": rooms, "city": city, "kind": kind})
    return frame, y


def frame_inputs(frame):
    """One input per column, as skl2onnx names them: FP32 [N, 1] or text [N, 1]."""
    from pandas.api.types import is_numeric_dtype

    return {c: frame[c].to_numpy().reshape(-1, 1).astype(np.float32 if is_numeric_dtype(frame[c]) else object)
            for c in frame.columns}


def frame_types(frame):
    from pandas.api.types import is_numeric_dtype
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [(c, FloatTensorType([None, 1]) if is_numeric_dtype(frame[c]) else StringTensorType([None, 1]))
            for c in frame.columns]


def opset5_forest(forest, member_feature, members):
    """A fitted scikit-learn forest regressor as opset 5's TreeEnsemble (which skl2onnx
    does not write yet), averaged, plus one tree of our own that splits by set
    membership (BRANCH_MEMBER, as categorical splits export) and sends NaN the true
    way."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = {k: [] for k in ("feature", "split", "mode", "true", "true_leaf", "false", "false_leaf", "missing")}
    leaf_weights, roots = [], []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        internal = [i for i in range(tree.node_count) if tree.children_left[i] != -1]
        leaves = [i for i in range(tree.node_count) if tree.children_left[i] == -1]
        at = {i: len(nodes["feature"]) + k for k, i in enumerate(internal)}
        leaf_at = {i: len(leaf_weights) + k for k, i in enumerate(leaves)}
        roots.append(at[0])
        for i in internal:
            nodes["feature"].append(int(tree.feature[i]))
            nodes["split"].append(float(tree.threshold[i]))
            nodes["mode"].append(0)  # BRANCH_LEQ: left when x <= threshold, as scikit-learn
            nodes["missing"].append(0)
            for side, child in (("true", tree.children_left[i]), ("false", tree.children_right[i])):
                is_leaf = tree.children_left[child] == -1
                nodes[side].append(leaf_at[child] if is_leaf else at[child])
                nodes[side + "_leaf"].append(int(is_leaf))
        leaf_weights.extend(float(tree.value[i].ravel()[0]) for i in leaves)
    roots.append(len(nodes["feature"]))
    for key, value in (("feature", member_feature), ("split", 0.0), ("mode", 6), ("true", len(leaf_weights)),
                       ("true_leaf", 1), ("false", len(leaf_weights) + 1), ("false_leaf", 1), ("missing", 1)):
        nodes[key].append(value)
    leaf_weights.extend([100.0, 200.0])
    features = forest.n_features_in_
    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, aggregate_function=0, post_transform=0,
        tree_roots=roots, nodes_featureids=nodes["feature"],
        nodes_splits=numpy_helper.from_array(np.array(nodes["split"], dtype=np.float32)),
        nodes_modes=numpy_helper.from_array(np.array(nodes["mode"], dtype=np.uint8)),
        nodes_truenodeids=nodes["true"], nodes_trueleafs=nodes["true_leaf"],
        nodes_falsenodeids=nodes["false"], nodes_falseleafs=nodes["false_leaf"],
        nodes_missing_value_tracks_true=nodes["missing"],
        membership_values=numpy_helper.from_array(np.array(members, dtype=np.float32)),
        leaf_targetids=[0] * len(leaf_weights),
        leaf_weights=numpy_helper.from_array(np.array(leaf_weights, dtype=np.float32)))
    graph = helper.make_graph([node], "forest-opset5",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, features])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])
    model.ir_version = 10
    return model


def cases():
    """Every case of the matrix, built on the spot (a few seconds)."""
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                                  HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Binarizer, OneHotEncoder, OrdinalEncoder, StandardScaler
    from sklearn.svm import SVC, SVR, LinearSVC
    from sklearn.tree import DecisionTreeClassifier
    import lightgbm
    import xgboost

    def f32(x):
        return np.asarray(x, dtype=np.float32)

    cancer_X, cancer_y = load_breast_cancer(return_X_y=True)
    iris_X, iris_y = load_iris(return_X_y=True)
    diabetes_X, diabetes_y = load_diabetes(return_X_y=True)
    cancer = split(f32(cancer_X), cancer_y)
    iris = split(f32(iris_X), iris_y)
    diabetes = split(f32(diabetes_X), diabetes_y.astype(np.float32))
    no_zipmap = {"zipmap": False}
    built = []

    def sklearn(name, model, data, options=None, **kw):
        X_train, X_test, y_train, _ = data
        model.fit(X_train, y_train)
        graph = to_onnx(model, X_train[:1], options=options, **kw)
        built.append(Case(name, graph.SerializeToString(), {graph.graph.input[0].name: X_test}))

    sklearn("scaler-logistic", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), cancer,
            {LogisticRegression: no_zipmap})
    sklearn("scaler-logistic-multiclass", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
            iris, {LogisticRegression: no_zipmap})
    sklearn("random-forest-binary", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0), cancer,
            no_zipmap)
    sklearn("random-forest-multiclass", RandomForestClassifier(n_estimators=20, random_state=0), iris, no_zipmap)
    sklearn("random-forest-regressor", RandomForestRegressor(n_estimators=20, max_depth=8, random_state=0),
            diabetes)
    sklearn("gradient-boosting-binary", GradientBoostingClassifier(n_estimators=40, random_state=0), cancer,
            no_zipmap)
    sklearn("gradient-boosting-multiclass", GradientBoostingClassifier(n_estimators=20, random_state=0), iris,
            no_zipmap)
    sklearn("gradient-boosting-regressor", GradientBoostingRegressor(n_estimators=50, random_state=0), diabetes)
    sklearn("hist-gradient-boosting-binary", HistGradientBoostingClassifier(max_iter=40, random_state=0), cancer,
            no_zipmap)
    sklearn("hist-gradient-boosting-regressor", HistGradientBoostingRegressor(max_iter=40, random_state=0),
            diabetes)
    sklearn("decision-tree", DecisionTreeClassifier(max_depth=5, random_state=0), iris, no_zipmap)
    sklearn("svc-rbf-probabilities", SVC(probability=True, random_state=0), iris, no_zipmap)
    sklearn("svc-linear-binary", make_pipeline(StandardScaler(), SVC(kernel="linear")), cancer, {SVC: no_zipmap})
    sklearn("svr-rbf", make_pipeline(StandardScaler(), SVR(C=50.0)), diabetes)
    # (skl2onnx 1.20 cannot convert LinearSVC inside a pipeline: it asks it for zipmap.)
    sklearn("linear-svc", LinearSVC(max_iter=5000), iris)
    sklearn("binarizer-logistic", make_pipeline(Binarizer(threshold=0.5), LogisticRegression(max_iter=500)),
            iris, {LogisticRegression: no_zipmap})
    sklearn("scaler-mlp", make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=300, random_state=0)),
            iris, {MLPClassifier: no_zipmap})

    # Opset 5's TreeEnsemble; its set-membership split tests a category code (onnxruntime
    # implements membership for integral values only): diabetes' sex column as 0 / 1.
    X_train, X_test, y_train, _ = diabetes
    X_train, X_test = X_train.copy(), X_test.copy()
    X_train[:, 1], X_test[:, 1] = X_train[:, 1] > 0, X_test[:, 1] > 0
    forest = RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0).fit(X_train, y_train)
    X_test[:4, 1] = np.nan  # missing: the membership split sends it the true way
    built.append(Case("tree-ensemble-opset5", opset5_forest(forest, 1, [1.0]).SerializeToString(), {"X": X_test}))

    # Columns as they come: imputed numbers, one-hot and ordinal-coded text.
    frame, y = mixed_table()
    train, test, y_train, _ = split(frame, y)
    test = test.copy()
    test.loc[test.index[:5], "city"] = "brest"  # a category training never saw
    numeric, text = ["size", "age", "rooms"], ["city", "kind"]
    for name, encoder, model in [
        ("imputer-onehot-gradient-boosting", OneHotEncoder(handle_unknown="ignore"),
         GradientBoostingClassifier(n_estimators=30, random_state=0)),
        ("imputer-ordinal-random-forest", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
         RandomForestClassifier(n_estimators=15, random_state=0)),
    ]:
        pipeline = make_pipeline(
            ColumnTransformer([("numbers", SimpleImputer(strategy="median"), numeric), ("text", encoder, text)]),
            model)
        pipeline.fit(train, y_train)
        graph = to_onnx(pipeline, initial_types=frame_types(frame), options={type(model): no_zipmap})
        built.append(Case(name, graph.SerializeToString(), frame_inputs(test)))

    # XGBoost and LightGBM, converted by onnxmltools.
    X_train, X_test, y_train, _ = cancer
    for name, model in [
        ("xgboost-binary", xgboost.XGBClassifier(n_estimators=30, max_depth=4, random_state=0)),
        ("lightgbm-binary", lightgbm.LGBMClassifier(n_estimators=30, random_state=0, verbose=-1)),
    ]:
        model.fit(X_train, y_train)
        types = [("input", MlFloat([None, X_train.shape[1]]))]
        convert = convert_xgboost if name.startswith("xgboost") else convert_lightgbm
        options = {} if name.startswith("xgboost") else {"zipmap": False}
        graph = convert(model, initial_types=types, target_opset=15, **options)
        built.append(Case(name, graph.SerializeToString(), {"input": X_test}))
    X_train, X_test, y_train, _ = iris
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X_train, y_train)
    graph = convert_xgboost(model, initial_types=[("input", MlFloat([None, 4]))], target_opset=15)
    built.append(Case("xgboost-multiclass", graph.SerializeToString(), {"input": X_test}))
    X_train, X_test, y_train, _ = diabetes
    model = lightgbm.LGBMRegressor(n_estimators=40, random_state=0, verbose=-1).fit(X_train, y_train)
    graph = convert_lightgbm(model, initial_types=[("input", MlFloat([None, 10]))], target_opset=15)
    built.append(Case("lightgbm-regressor", graph.SerializeToString(), {"input": X_test}))
    return built
