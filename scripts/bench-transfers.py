#!/usr/bin/env python3
"""Large artifacts and datasets through modelplane, measured (issue 22): peak memory of
every process (VmHWM from /proc/PID/status, or the CLI's ru_maxrss) and loopback
throughput of uploads and downloads.

    target/interop-venv/bin/python scripts/bench-transfers.py [--onnx-gib 3] [--csv-gib 2] [--mode cluster|up]

`cluster` runs etcd and one process per role (registry, trainer, worker, router); `up`
runs `modelplane up` (every role in one process, the embedded store). Generated files
live in a temporary folder that is removed at the end; nothing is committed. Needs the
release binary (`cargo build --release`) and numpy + onnx (the interop venv has both).
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
WIDTH = 4096  # each weight matrix is 4096 x 4096 FP32: 64 MiB


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hwm(pid):
    """Peak resident memory of a process so far, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def reset_hwm(pid):
    """Starts a new peak: writing 5 to clear_refs resets VmHWM to the current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


def start(bin, args, log, roles):
    proc = subprocess.Popen([bin, *args], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    addrs = {}
    while len(addrs) < roles:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{args[0]} did not start: {open(log).read()[-2000:]}")
        if line.startswith("modelplane: ") and " listening on " in line:
            role, addr = line[len("modelplane: "):].strip().split(" listening on ")
            addrs[role] = addr
    return proc, addrs


def run_cli(bin, env, *args):
    """Runs the CLI; returns (seconds, its peak RSS, stdout). The peak is VmHWM polled
    from /proc (a forked child's ru_maxrss would count the Python process it came from)."""
    started = time.monotonic()
    proc = subprocess.Popen([bin, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, hwm(proc.pid))
        except (OSError, RuntimeError):
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"modelplane {' '.join(args)} failed: {err.decode()}")
    return took, peak, out.decode()


def write_csv(path, gib):
    """Rows of 8 numeric features and a numeric target (`y`), about `gib` GiB."""
    rng = np.random.default_rng(1)
    block = rng.normal(size=(100_000, 9)).astype(np.float32)
    text = "\n".join(",".join(f"{v:.5f}" for v in row) for row in block) + "\n"
    target = gib * (1 << 30)
    with open(path, "w") as out:
        out.write(",".join([f"f{i}" for i in range(8)] + ["y"]) + "\n")
        written = 0
        while written < target:
            out.write(text)
            written += len(text)
    return os.path.getsize(path)


def write_onnx(folder, gib):
    """A chain of 4096x4096 MatMuls, its weights (about `gib` GiB) as external data."""
    from onnx import TensorProto, helper, numpy_helper, save_model

    layers = max(1, int(gib * 1024 // 64))
    rng = np.random.default_rng(2)
    nodes, weights = [], []
    previous = "x"
    for i in range(layers):
        w = (rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / WIDTH ** 0.5)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [out]))
        previous = out
    graph = helper.make_graph(nodes, "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", WIDTH])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = os.path.join(folder, "big.onnx")
    save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="big.weights",
               size_threshold=0)
    return path, layers * WIDTH * WIDTH * 4


def disk_write_rate(folder):
    """MB/s of writing 1 GiB into `folder` and fsyncing it: what bounds an upload (the
    registry fsyncs every blob before it is visible) and a download to a file."""
    path = os.path.join(folder, "disk-rate.bin")
    block = os.urandom(MIB)
    started = time.monotonic()
    with open(path, "wb") as out:
        for _ in range(1024):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    took = time.monotonic() - started
    os.remove(path)
    return round((1 << 30) / took / 1e6)


def wait_ready(router, model, timeout=900):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(router)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.is_model_ready(model):
                return client
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{model} not ready after {timeout}s")
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(REPO, "target", "release", "modelplane"))
    parser.add_argument("--onnx-gib", type=float, default=3.0)
    parser.add_argument("--csv-gib", type=float, default=2.0)
    parser.add_argument("--concurrent-mib", type=int, default=500)
    parser.add_argument("--mode", choices=["cluster", "up"], default="cluster")
    parser.add_argument("--work", default=None, help="folder for generated files (default: a temporary one)")
    parser.add_argument("--data-dir", default=None,
                        help="folder for the registry's blobs and the worker's cache (default: in --work); "
                             "e.g. /dev/shm to measure modelplane without the disk")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="modelplane-bench-transfers-")
    os.makedirs(work, exist_ok=True)
    procs = {}
    results = {"mode": args.mode}
    try:
        print(f"== generating a {args.csv_gib} GiB CSV and a {args.onnx_gib} GiB ONNX graph in {work}", flush=True)
        csv_path = os.path.join(work, "big.csv")
        csv_bytes = write_csv(csv_path, args.csv_gib)
        onnx_path, weight_bytes = write_onnx(work, args.onnx_gib)
        small = []
        for i in range(4):
            path = os.path.join(work, f"part{i}.csv")
            write_csv(path, args.concurrent_mib / 1024 + i * 1e-4)
            small.append(path)

        data = args.data_dir or os.path.join(work, "data")
        os.makedirs(data, exist_ok=True)
        results["disk_fsync_write_mb_per_s"] = disk_write_rate(data)
        print(f"== the data folder's disk writes {results['disk_fsync_write_mb_per_s']} MB/s (1 GiB, fsynced)",
              flush=True)
        if args.mode == "cluster":
            etcd_dir = os.path.join(work, "etcd")
            client_port, peer_port = free_port(), free_port()
            url = f"http://127.0.0.1:{client_port}"
            procs["etcd"] = subprocess.Popen(
                ["etcd", "--data-dir", etcd_dir, "--listen-client-urls", url, "--advertise-client-urls", url,
                 "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-cluster", f"default=http://127.0.0.1:{peer_port}"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "etcd.log"), "w"))
            time.sleep(1.5)
            procs["registry"], a = start(args.bin, ["registry", "--etcd", url, "--listen", "127.0.0.1:0",
                                                    "--blob-dir", os.path.join(data, "blobs")],
                                         os.path.join(work, "registry.log"), 1)
            registry = a["registry"]
            procs["trainer"], a = start(args.bin, ["trainer", "--etcd", url, "--listen", "127.0.0.1:0",
                                                   "--registry", registry],
                                        os.path.join(work, "trainer.log"), 1)
            trainer = a["trainer"]
            procs["worker"], _ = start(args.bin, ["worker", "--etcd", url, "--listen", "127.0.0.1:0",
                                                  "--registry", registry, "--cache-dir", os.path.join(data, "cache"),
                                                  "--memory-capacity", "16GiB"],
                                       os.path.join(work, "worker.log"), 1)
            procs["router"], a = start(args.bin, ["router", "--etcd", url, "--listen", "127.0.0.1:0",
                                                  "--http-listen", "127.0.0.1:0"],
                                       os.path.join(work, "router.log"), 1)
            router = a["router"]
            roles = {"registry": procs["registry"], "trainer": procs["trainer"], "worker": procs["worker"]}
        else:
            procs["up"], a = start(args.bin, ["up", "--data-dir", data, "--grpc-port", "0", "--http-port", "0",
                                              "--registry-port", "0", "--trainer-port", "0", "--worker-port", "0"],
                                   os.path.join(work, "up.log"), 5)
            registry, trainer, router = a["registry"], a["trainer"], a["router"]
            roles = {"registry": procs["up"], "trainer": procs["up"], "worker": procs["up"]}
        env = dict(os.environ, MODELPLANE_REGISTRY=registry, MODELPLANE_TRAINER=trainer, MODELPLANE_ROUTER=router)

        def measured(role, action):
            pid = roles[role].pid
            before = hwm(pid)
            reset_hwm(pid)
            base = hwm(pid)
            value = action()
            return value, hwm(pid) - base, base, before

        print("== dataset upload", flush=True)
        (took, cli_rss, _), growth, base, _ = measured(
            "registry", lambda: run_cli(args.bin, env, "datasets", "upload", csv_path, "--name", "big"))
        results["dataset_upload"] = {"bytes": csv_bytes, "seconds": round(took, 2),
                                     "mb_per_s": round(csv_bytes / took / 1e6), "cli_peak_rss": cli_rss,
                                     "registry_rss_growth": growth}
        print(results["dataset_upload"], flush=True)

        print("== training on it (linear, 1 epoch)", flush=True)

        def train():
            started = time.monotonic()
            subprocess.run([args.bin, "train", "big-linear", "--dataset", "big", "--target", "y", "--kind", "linear",
                            "--epochs", "1"], env=env, check=True, stdout=subprocess.DEVNULL)
            return time.monotonic() - started
        took, growth, base, _ = measured("trainer", train)
        rows = 0
        listed = subprocess.run([args.bin, "datasets", "list"], env=env, capture_output=True, text=True).stdout
        for line in listed.splitlines():
            if line.startswith("big\t"):
                rows = int(line.split("\t")[1].split()[0])
        parsed = rows * 9 * 4
        results["train"] = {"rows": rows, "parsed_bytes": parsed, "seconds": round(took, 1),
                            "trainer_rss_growth": growth, "ratio_to_parsed": round(growth / parsed, 2)}
        print(results["train"], flush=True)

        print("== ONNX import (graph + external data as one archive)", flush=True)
        (took, cli_rss, _), growth, base, _ = measured(
            "registry", lambda: run_cli(args.bin, env, "models", "import", "big-onnx", onnx_path))
        archive = weight_bytes
        results["onnx_import"] = {"weight_bytes": weight_bytes, "seconds": round(took, 2),
                                  "mb_per_s": round(archive / took / 1e6), "cli_peak_rss": cli_rss,
                                  "registry_rss_growth": growth}
        print(results["onnx_import"], flush=True)

        print("== deploy and load on the worker", flush=True)

        def deploy():
            started = time.monotonic()
            subprocess.run([args.bin, "deploy", "big-onnx", "--version", "1"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            client = wait_ready(router, "big-onnx")
            return time.monotonic() - started, client
        (took, client), growth, base, _ = measured("worker", deploy)
        import tritonclient.grpc as grpcclient
        x = grpcclient.InferInput("x", [1, WIDTH], "FP32")
        x.set_data_from_numpy(np.ones((1, WIDTH), dtype=np.float32))
        y = client.infer("big-onnx", [x]).as_numpy("y")
        results["onnx_load"] = {"seconds_to_ready": round(took, 1), "worker_rss_growth": growth,
                                "ratio_to_weights": round(growth / weight_bytes, 2), "output_shape": list(y.shape)}
        print(results["onnx_load"], flush=True)

        print("== download", flush=True)
        target = os.path.join(data, "download.bin")
        took, cli_rss, _ = run_cli(args.bin, env, "models", "download", "big-onnx", "1", "--output", target)
        size = os.path.getsize(target)
        os.remove(target)
        results["download"] = {"bytes": size, "seconds": round(took, 2), "mb_per_s": round(size / took / 1e6),
                               "cli_peak_rss": cli_rss}
        print(results["download"], flush=True)

        print(f"== four concurrent {args.concurrent_mib} MiB uploads", flush=True)
        pid = roles["registry"].pid
        reset_hwm(pid)
        base = hwm(pid)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda p: run_cli(args.bin, env, "datasets", "upload", p), small))
        took = time.monotonic() - started
        total = sum(os.path.getsize(p) for p in small)
        results["concurrent_uploads"] = {"bytes": total, "seconds": round(took, 2),
                                         "mb_per_s": round(total / took / 1e6), "registry_peak_rss": hwm(pid),
                                         "registry_rss_growth": hwm(pid) - base}
        print(results["concurrent_uploads"], flush=True)
        print(json.dumps(results, indent=2))
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        if args.data_dir:
            shutil.rmtree(args.data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
