"""The cluster the tritonclient tests share: `modelplane up` on free ports in a temporary
directory with a linear model (`houses`, alias production), a text model (`tickets`) and
imported ONNX graphs (a classifier, typed, pixel, half-precision and slow ones) deployed
through the CLI; and the helpers that compute the expected answers from the artifact
files themselves."""
import glob
import json
import os
import shutil
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

# Loopback never goes through a proxy, for the test's own clients (urllib, gRPC) as for
# the processes it starts.
LOOPBACK = "127.0.0.1,localhost,::1"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = LOOPBACK


def clean_env(**extra):
    """The environment of a process a test starts: PATH and HOME of the caller's (and
    RAYON_NUM_THREADS, the knob for trying the suite with one compute thread), no proxy
    for loopback, and `extra`. Whatever else the developer's shell exports (MODELPLANE_*,
    OTEL_EXPORTER_OTLP_ENDPOINT, HTTP_PROXY, RUST_LOG...) stays out."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "RAYON_NUM_THREADS") if name in os.environ}
    env.update(NO_PROXY=LOOPBACK, no_proxy=LOOPBACK)
    env.update(extra)
    return env


def work_dir(prefix):
    """A temporary directory that `remove_work_dir` deletes at the end."""
    return tempfile.mkdtemp(prefix=prefix)


def remove_work_dir(path):
    shutil.rmtree(path, ignore_errors=True)


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


# A deliberately slow ONNX model: SLOW_DEPTH chained 256x256 MatMuls (33.5 MFLOP a row),
# for the tests that need a call still computing when they act on it. How many rows take
# long enough depends on the machine, so `slow_rows` measures it where the tests run.
SLOW_WIDTH, SLOW_DEPTH = 256, 256
SLOW_ENOUGH = 1.0  # seconds a slow call computes at least
SLOW_MAX_ROWS = 32768  # 32 MiB of FP32, under the 64 MiB message limit


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


_SLOW_ROWS = {}


def slow_rows(router, model="slow-chain"):
    """(rows, seconds): a request of `rows` rows to `model` through `router` computes for
    SLOW_ENOUGH seconds or more here, measured by trying (once per router)."""
    import tritonclient.grpc as grpcclient

    if router not in _SLOW_ROWS:
        client = grpcclient.InferenceServerClient(router)

        def timed(rows):
            x = grpcclient.InferInput("x", [rows, SLOW_WIDTH], "FP32")
            x.set_data_from_numpy(np.ones((rows, SLOW_WIDTH), dtype=np.float32))
            started = time.monotonic()
            client.infer(model, [x])
            return time.monotonic() - started

        rows = 16
        timed(rows)  # the first call warms caches up: not a measure
        while True:
            took = timed(rows)
            if took >= SLOW_ENOUGH:
                break
            assert rows < SLOW_MAX_ROWS, f"even {rows} rows of {model} compute in only {took:.2f}s"
            # Straight to the estimate (with a margin), at least doubling.
            rows = min(SLOW_MAX_ROWS, max(2 * rows, int(rows * 1.5 * SLOW_ENOUGH / max(took, 1e-3))))
        _SLOW_ROWS[router] = rows, took
        print(f"{model} computes {rows} rows in {took:.2f}s through {router}")
    return _SLOW_ROWS[router]


def start_modelplane(args, env, roles, log_path, bin=BIN):
    """Starts `modelplane ARGS`; returns the process and the `roles` addresses it printed
    as `modelplane: ROLE listening on ADDR`."""
    import queue
    import threading

    proc = subprocess.Popen([bin, *args], stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True, env=env)
    lines = queue.Queue()

    def read():  # keeps draining stdout, so the process never blocks on it
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    addrs = {}
    deadline = time.monotonic() + 120  # bounds a hang only
    while len(addrs) < roles:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith("modelplane: ") and " listening on " in line:
            role, addr = line[len("modelplane: "):].strip().split(" listening on ")
            addrs[role] = addr
    if len(addrs) < roles:
        proc.kill()
        raise AssertionError(f"modelplane {args[0]} did not start: {open(log_path).read()[-2000:]}")
    return proc, addrs


def start_up(work, extra_args=(), env=None, bin=BIN):
    """`modelplane up` on free ports with its data in `work`; returns the process, the
    addresses of its roles and the environment a CLI pointed at it runs in."""
    env = env if env is not None else clean_env()
    proc, addrs = start_modelplane(
        ["up", *extra_args, "--data-dir", os.path.join(work, "data"), "--grpc-port", "0", "--http-port", "0",
         "--registry-port", "0", "--trainer-port", "0", "--worker-port", "0"],
        env, 5, os.path.join(work, "up.log"), bin)
    # The CLI finds the admin key `up` made in its data dir, as the README says.
    cli_env = dict(env, MODELPLANE_REGISTRY=addrs["registry"], MODELPLANE_TRAINER=addrs["trainer"],
                   MODELPLANE_ROUTER=addrs["router"], MODELPLANE_DATA_DIR=os.path.join(work, "data"))
    return proc, addrs, cli_env


def admin_headers(work):
    """The `authorization` header of the admin key `up` made in `work`'s data dir (mode
    0600, as the security issue asks)."""
    path = os.path.join(work, "data", "admin.key")
    assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
    with open(path) as f:
        return {"authorization": "Bearer " + f.read().strip()}


def make_data(work):
    """The walkthrough's example CSVs (houses, churn, tickets) in `work`."""
    subprocess.run([sys.executable, os.path.join(REPO, "examples", "make-data.py"), work], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)


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
    """Runs `modelplane ARGS` against the cluster (in a clean environment); returns the
    finished process (its output as text). `check=False` lets a test look at a failure."""
    def run(*args, check=True):
        return subprocess.run([BIN, *args], check=check, capture_output=True, text=True, timeout=600, **CLI)
    return run


@pytest.fixture(scope="session")
def cluster():
    work = work_dir("modelplane-interop-")
    proc, addrs, env = start_up(work)

    def cli(*args):
        subprocess.run([BIN, *args], check=True, env=env, cwd=work, stdout=subprocess.PIPE, timeout=600)

    make_data(work)
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
    HTTP["admin"] = admin_headers(work)
    HTTP["worker"] = addrs["worker"]
    CLI.update(env=env, cwd=work)
    yield addrs["router"], artifacts[0]
    proc.terminate()
    try:
        assert proc.wait(timeout=30) == 0, "modelplane up did not exit cleanly on SIGTERM"
    finally:
        remove_work_dir(work)


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
    # Load and unload deploy: callers without a key (inference only, on `up`) may not.
    try:
        client.unload_model(model)
        raise AssertionError("an anonymous caller unloaded a model")
    except Exception as err:  # tritonclient.grpc and .http raise their own classes
        assert "UNAUTHENTICATED" in str(err.status()) or err.status() == "401", err
        assert "needs an API key" in err.message(), err.message()
    client.unload_model(model, headers=HTTP["admin"])
    deadline = time.time() + 60
    while model in listed():
        assert time.time() < deadline, f"the router still lists the unloaded {model}"
        time.sleep(0.1)
    client.load_model(model, headers=HTTP["admin"])
    deadline = time.time() + 60
    while not client.is_model_ready(model):
        assert time.time() < deadline, f"the reloaded {model} never became ready"
        time.sleep(0.1)
