"""The cluster the tritonclient tests share: `modelplane up` on free ports in a temporary
directory with a linear model (`houses`, alias production), a text model (`tickets`) and
imported ONNX graphs (a classifier, typed, pixel, half-precision and slow ones) deployed
through the CLI; and the helpers that compute the expected answers from the artifact
files themselves."""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

BIN = os.environ.get("MODELPLANE_BIN", "target/debug/modelplane")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def read_safetensors(path):
    """Tensors and metadata of a safetensors file, parsed by hand with numpy."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    metadata = header.pop("__metadata__", {})
    body = data[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32"
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"])
    return tensors, metadata


ONNX_RNG = np.random.default_rng(0)
W1 = ONNX_RNG.normal(size=(4, 8)).astype(np.float32)
B1 = ONNX_RNG.normal(size=(8,)).astype(np.float32)
W2 = ONNX_RNG.normal(size=(8, 3)).astype(np.float32)
B2 = ONNX_RNG.normal(size=(3,)).astype(np.float32)


def write_onnx_classifier(path):
    """Gemm -> Relu -> Gemm -> Softmax, batch dimension left symbolic, built with onnx."""
    from onnx import TensorProto, helper, numpy_helper, checker, save

    nodes = [
        helper.make_node("Gemm", ["features", "W1", "B1"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["activated"]),
        helper.make_node("Gemm", ["activated", "W2", "B2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(a, n) for a, n in [(W1, "W1"), (B1, "B1"), (W2, "W2"), (B2, "B2")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, path)


# Integer ids in; FP32 scores, an INT64 label (ArgMax) and BOOL flags out: the kinds of
# tensors exported classifiers and NLP models carry besides FP32.
TYPED_W = np.array([[1.0, -1.0], [0.5, 2.0], [-3.0, 0.25]], dtype=np.float32)


def write_typed_onnx(path):
    from onnx import TensorProto, helper, numpy_helper, checker, save

    nodes = [
        helper.make_node("Cast", ["ids"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["as_float", "W"], ["scores"]),
        helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
        helper.make_node("Greater", ["scores", "zero"], ["positive"]),
    ]
    graph = helper.make_graph(
        nodes, "typed",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("positive", TensorProto.BOOL, ["N", 2])],
        initializer=[numpy_helper.from_array(TYPED_W, "W"), numpy_helper.from_array(np.float32(0.0), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, path)


# UINT8 pixels in; FP16 and UINT8 out: an image graph exported in half precision.
def write_pixels_onnx(path):
    from onnx import TensorProto, helper, numpy_helper, checker, save

    nodes = [
        helper.make_node("Cast", ["pixels"], ["as_half"], to=TensorProto.FLOAT16),
        helper.make_node("Mul", ["as_half", "half_scale"], ["scaled"]),
        helper.make_node("Sub", ["white", "pixels"], ["inverted"]),
    ]
    graph = helper.make_graph(
        nodes, "pixels",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 4])],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT16, ["N", 4]),
         helper.make_tensor_value_info("inverted", TensorProto.UINT8, ["N", 4])],
        initializer=[numpy_helper.from_array(np.float16(0.5), "half_scale"),
                     numpy_helper.from_array(np.uint8(255), "white")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, path)


# FP16 in and out (doubled): a graph that takes half precision directly.
def write_half_onnx(path):
    from onnx import TensorProto, helper, checker, save

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["doubled"])], "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 3])],
        [helper.make_tensor_value_info("doubled", TensorProto.FLOAT16, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, path)


# A deliberately slow ONNX model: SLOW_DEPTH chained 256x256 MatMuls, so a request of
# SLOW_ROWS rows computes for a second or more (for the cancellation test).
SLOW_WIDTH, SLOW_DEPTH, SLOW_ROWS = 256, 64, 4096


def write_slow_onnx(path):
    from onnx import TensorProto, helper, numpy_helper, checker, save

    w = (np.random.default_rng(1).normal(size=(SLOW_WIDTH, SLOW_WIDTH)) / 16).astype(np.float32)
    names = ["x"] + [f"h{i}" for i in range(1, SLOW_DEPTH)] + ["y"]
    nodes = [helper.make_node("MatMul", [names[i], "W"], [names[i + 1]]) for i in range(SLOW_DEPTH)]
    graph = helper.make_graph(
        nodes, "slow_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", SLOW_WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", SLOW_WIDTH])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, path)


def start_modelplane(args, env, roles, log_path):
    """Starts `modelplane ARGS`; returns the process and the `roles` addresses it printed
    as `modelplane: ROLE listening on ADDR`."""
    proc = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True, env=env)
    addrs = {}
    deadline = time.time() + 60
    while len(addrs) < roles and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("modelplane: ") and " listening on " in line:
            role, addr = line[len("modelplane: "):].strip().split(" listening on ")
            addrs[role] = addr
    assert len(addrs) == roles, f"modelplane {args[0]} did not start: {open(log_path).read()[-2000:]}"
    return proc, addrs


# The router's REST address and the worker's gRPC one, filled in by `cluster`.
HTTP = {}
# The CLI's environment and working directory, filled in by `cluster`.
CLI = {}


@pytest.fixture(scope="session")
def rest(cluster):
    """Base URL of the router's KServe v2 REST endpoint."""
    return HTTP["url"]


@pytest.fixture(scope="session")
def cli(cluster):
    """Runs `modelplane ARGS` against the cluster; returns the finished process (its
    output as text). `check=False` lets a test look at a failure."""
    def run(*args, check=True):
        return subprocess.run([BIN, *args], check=check, capture_output=True, text=True, **CLI)
    return run


@pytest.fixture(scope="session")
def cluster():
    work = tempfile.mkdtemp(prefix="modelplane-interop-")
    proc, addrs = start_modelplane(
        ["up", "--data-dir", os.path.join(work, "data"), "--grpc-port", "0", "--http-port", "0",
         "--registry-port", "0", "--trainer-port", "0", "--worker-port", "0"],
        os.environ, 5, os.path.join(work, "up.log"))
    env = dict(os.environ, MODELPLANE_REGISTRY=addrs["registry"], MODELPLANE_TRAINER=addrs["trainer"],
               MODELPLANE_ROUTER=addrs["router"])

    def cli(*args):
        subprocess.run([BIN, *args], check=True, env=env, cwd=work, stdout=subprocess.PIPE)

    subprocess.run([sys.executable, os.path.join(REPO, "examples", "make-data.py"), work], check=True,
                   stdout=subprocess.PIPE)
    cli("datasets", "upload", "houses.csv")
    cli("train", "houses", "--dataset", "houses", "--target", "price", "--kind", "linear", "--epochs", "30")
    cli("alias", "set", "houses", "production", "1")
    cli("deploy", "houses", "--alias", "production")
    artifacts = glob.glob(os.path.join(work, "data", "blobs", "artifacts", "*"))
    assert len(artifacts) == 1, artifacts
    cli("datasets", "upload", "tickets.csv")
    cli("train", "tickets", "--dataset", "tickets", "--target", "topic", "--kind", "softmax",
        "--param", "text_column=text")
    cli("deploy", "tickets", "--version", "1")
    onnx_path = os.path.join(work, "classifier.onnx")
    write_onnx_classifier(onnx_path)
    cli("models", "import", "onnx-classifier", onnx_path)
    cli("deploy", "onnx-classifier", "--version", "1")
    typed_path = os.path.join(work, "typed.onnx")
    write_typed_onnx(typed_path)
    cli("models", "import", "onnx-typed", typed_path)
    cli("deploy", "onnx-typed", "--version", "1")
    for name, writer in [("onnx-pixels", write_pixels_onnx), ("onnx-half", write_half_onnx)]:
        graph_path = os.path.join(work, name + ".onnx")
        writer(graph_path)
        cli("models", "import", name, graph_path)
        cli("deploy", name, "--version", "1")
    slow_path = os.path.join(work, "slow.onnx")
    write_slow_onnx(slow_path)
    cli("models", "import", "slow-chain", slow_path)
    cli("deploy", "slow-chain", "--version", "1")
    HTTP["url"] = "http://" + addrs["router-http"]
    HTTP["worker"] = addrs["worker"]
    CLI.update(env=env, cwd=work)
    yield addrs["router"], artifacts[0]
    proc.terminate()
    assert proc.wait(timeout=20) == 0, "modelplane up did not exit cleanly on SIGTERM"


ROWS = np.array([[120, 3, 10], [60, 1, 45], [200, 5, 2.5]], dtype=np.float32)


def expected(artifact, rows=ROWS):
    """The linear model's predictions for `rows`, from the artifact's own tensors."""
    t, metadata = read_safetensors(artifact)
    manifest = json.loads(metadata["modelplane.manifest"])
    assert manifest["head"] == "identity" and manifest["activations"] == ["identity"]
    z = ((rows - t["scaler.mean"]) / t["scaler.scale"]) @ t["layers.0.weight"] + t["layers.0.bias"]
    return z.astype(np.float32)


def unload_and_reload(client, model, listed):
    """Unloads `model` through a tritonclient (gRPC or HTTP), waits until `listed()`
    (the names in the repository index) leaves it out, loads it again and waits until
    it is ready."""
    client.unload_model(model)
    deadline = time.time() + 20
    while model in listed():
        assert time.time() < deadline, f"the router still lists the unloaded {model}"
        time.sleep(0.1)
    client.load_model(model)
    deadline = time.time() + 30
    while not client.is_model_ready(model):
        assert time.time() < deadline, f"the reloaded {model} never became ready"
        time.sleep(0.1)
