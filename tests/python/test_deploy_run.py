"""A manifest-driven local run: deploy/overlays/dev's pods as local processes.

`kubectl kustomize deploy/overlays/dev` is rendered, and every container of its
Deployments and StatefulSets (as many pods as each keeps) is started as a local process
with the container's own command, args and env, its volumes laid out in a temporary
directory (test_deploy.Pod: ConfigMap files, Secrets in make-secrets.sh's form, emptyDirs),
and the network rewritten for one machine:

- every container port of every pod gets a free port on 127.0.0.1, and a listen address
  on a port of the pod (`0.0.0.0:7001`, `$(POD_IP):7003`, `http://0.0.0.0:2379`) becomes
  127.0.0.1 and that port;
- a Service name (`registry:7001`, `http://etcd:2379`, `etcd-0.etcd-headless.NS.svc:2380`,
  in args, env or the role's TOML) becomes the loopback port of the containerPort the
  Service's targetPort names on a pod it selects; a host the overlay does not define (the
  OTLP collector) stays as written.

The pods are then probed as the kubelet would (each container's startup, then readiness
probe: gRPC `grpc.health.v1.Health/Check`, HTTP GET, TCP), and a linear model is trained,
deployed and served through the Services the way docs/kubernetes.md's quick start does
through `kubectl port-forward`: the CLI with the admin key make-secrets.sh would have
written, tritonclient (gRPC) on the router Service's port, the answer checked against the
artifact's own tensors and against the exact function the CSV was made from.

OTEL_EXPORTER_OTLP_ENDPOINT stays http://otel-collector:4317, which does not resolve here
(nor on a cluster without a collector): each role logs one ExportError and goes on; it
neither blocks nor floods, so OTEL_SDK_DISABLED is not needed. The worker's
`memory-capacity = "auto"` reads a cgroup limit the local process may not have, so it
offers more than the pod's 1Gi; the test's model is tiny either way. preStop hooks (the
router's and registry's `sleep`) are not run.

No cluster and no `modelplane up`; needs the `etcd` binary on PATH.
"""

import contextlib
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from conftest import REPO, clean_env, expected, remove_work_dir, work_dir
from test_deploy import (MODELPLANE, Pod, config_path, expand, is_modelplane, name_of, namespace_of, objects,
                         pod_labels, pod_spec, replicas, secret_content, selects, workloads)

OVERLAY = "dev"
# Kubernetes' defaults for a probe's fields.
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3}
# How often the probes here are tried: more often than the manifests' periods, to be quick;
# the kubelet's budget (initialDelaySeconds + periodSeconds x failureThreshold) still bounds
# a startup probe, and READY_DEADLINE the whole start.
POLL = 0.25
READY_DEADLINE = 150
# restartPolicy Always: the kubelet waits 10 s, 20 s, 40 s ... (up to 5 min) before it
# starts an exited container again; here 1 s, 2 s, 4 s, 8 s, and a fifth exit fails.
RESTART_BACKOFF = (1, 2, 4, 8)
MAX_RESTARTS = 5
# Hosts that mean "this pod" in a listen address (the pod IP is 127.0.0.1 here).
OWN_HOSTS = {"0.0.0.0", "127.0.0.1", "localhost", "[::]", "::"}
# host:port in a URL, a listen address or a member list (`etcd-0=http://HOST:2380`).
ADDRESS = re.compile(r"(?<![\w.-])(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})(?![\d.])")
DOCKERFILE = os.path.join(REPO, "deploy", "Dockerfile")

# The linear function the CSV is made of (no noise): y = X @ COEFFICIENTS + INTERCEPT.
COEFFICIENTS = np.array([4.0, -3.0, 10.0])
INTERCEPT = 25.0
ROWS = np.array([[1.5, -2.0, 2.0], [9.0, 4.5, 1.0], [5.0, 0.0, 3.0]], dtype=np.float32)


def free_port(taken):
    """A port nothing listens on, below the ephemeral range: ports taken with bind(0) by other
    tests, and the source ports of outgoing connections, come from that range, so none of
    them can take this port between now and the moment a process here binds it."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(10000, low) if low > 11000 else 0
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise AssertionError("no free port")


@contextlib.contextmanager
def logs_on_failure(cluster):
    """Prints every process's output tail (shown with the failure) when the body fails."""
    try:
        yield
    except BaseException:
        print(cluster.tails())
        raise


def image_entrypoint(image):
    """The ENTRYPOINT a container without `command` runs: deploy/Dockerfile's for the
    modelplane image (its binary is the one under test), else unknown here."""
    name = re.split("[:@]", image.rsplit("/", 1)[-1])[0]
    if name != "modelplane":
        pytest.fail(f"no local entrypoint for image {image}: give the container a `command`")
    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", open(DOCKERFILE).read(), re.M)
    assert found, f"{DOCKERFILE} has no exec-form ENTRYPOINT"
    return json.loads(found.group(1))


def local_binary(path):
    """The local program for a path in the image: the binary under test for modelplane, else
    the program of that name on PATH.

    etcd: the StatefulSet runs quay.io/coreos/etcd with `command: [/usr/local/bin/etcd]`, no
    args and every setting as an ETCD_* variable, which the local `etcd` reads the same way;
    only the addresses (to loopback ports) and ETCD_DATA_DIR (under the emptyDir's directory)
    are rewritten. The local etcd may be older than the image's (3.4.23 here against
    v3.5.21): every variable the overlay sets is a flag of 3.4 too, and its /health on the
    metrics URL answers the probes' `?exclude=NOSPACE&serializable=true` as 3.5 does."""
    name = os.path.basename(path)
    if name == "modelplane":
        return MODELPLANE
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} (the container's {path}) is not on PATH")
    return found


# --- the pods ---------------------------------------------------------------------------


class LocalPod(Pod):
    """One pod of a workload: test_deploy.Pod's layout and env, with its own name for the
    downward API, the namespace's Secrets shared with the other pods (every replica of a
    role presents the same key, as with the real Secret) and the network rewritten to
    loopback ports by the cluster."""

    def __init__(self, cluster, workload, container, pod_name, root):
        self.cluster, self.pod_name = cluster, pod_name
        super().__init__(cluster.overlay, workload, container, root)
        self.command = [self.rewrite_arg(expand(arg, self.env)) for arg in container.get("command", [])]
        self.apply_file_modes()

    def secret(self, name):
        return self.cluster.secret(name)

    def env_value(self, entry, env):
        field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field == "metadata.name":
            return self.pod_name
        return super().env_value(entry, env)

    def rewrite(self, value):
        return self.cluster.localize(self.pod_name, super().rewrite(value))

    def apply_file_modes(self):
        """ConfigMap and Secret files get the volume's defaultMode (or an item's mode), as the
        kubelet writes them (0644 unless said)."""
        volumes = {v["name"]: v for v in pod_spec(self.workload).get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            source = volume.get("secret") or volume.get("configMap")
            if source is None:
                continue
            modes = {item["path"]: item.get("mode") for item in source.get("items", [])}
            directory = self.local(mount["mountPath"])
            for dirpath, _, files in os.walk(directory):
                for file in files:
                    path = os.path.join(dirpath, file)
                    mode = modes.get(os.path.relpath(path, directory)) or source.get("defaultMode", 0o644)
                    os.chmod(path, mode)

    def argv(self):
        command = self.command or image_entrypoint(self.container["image"])
        return [local_binary(command[0]), *command[1:], *self.args]


class Process:
    """A container's process, restarted as restartPolicy Always would (after
    RESTART_BACKOFF[n] seconds for the n-th restart: the kubelet's 10 s doubling, scaled
    down), with each run's output appended to its log files."""

    def __init__(self, pod, log_dir):
        self.pod = pod
        self.name = f"{pod.pod_name}/{pod.container['name']}"
        self.stdout_path = os.path.join(log_dir, f"{pod.pod_name}.{pod.container['name']}.stdout")
        self.stderr_path = os.path.join(log_dir, f"{pod.pod_name}.{pod.container['name']}.stderr")
        self.argv = pod.argv()
        self.restarts, self.exits = 0, []
        self.run()

    def run(self):
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            if self.restarts:
                for f in (out, err):
                    f.write(f"=== restart {self.restarts} ===\n".encode())
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=clean_env(**self.pod.env), cwd=self.pod.cwd, start_new_session=True)
        self.started_at = time.monotonic()
        self.started = self.ready = False
        self.probe_error = "not probed yet"

    def exited(self):
        """Records an exit (code, last stderr line) once; returns when to restart."""
        if not self.exits or self.exits[-1][0] is not self.proc:
            with open(self.stderr_path, errors="replace") as f:
                last = (f.read().strip().splitlines() or [""])[-1]
            self.exits.append((self.proc, self.proc.returncode, last, self.started_at, time.monotonic()))
        return self.exits[-1][4] + RESTART_BACKOFF[min(self.restarts, len(RESTART_BACKOFF) - 1)]

    def restart(self):
        self.restarts += 1
        self.run()

    def exit_summary(self):
        return [f"exit {code} after {ended - started:.1f}s: {last[:300]}"
                for _, code, last, started, ended in self.exits]

    def tail(self, lines=25):
        parts = [f"--- {self.name}: {self.argv} (exit {self.proc.poll()}; probe: {self.probe_error}; "
                 f"restarts: {self.restarts} {self.exit_summary()})"]
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            with open(path, errors="replace") as f:
                text = f.read().splitlines()[-lines:]
            parts.append(f"  [{label}]\n" + "\n".join("  " + line[:600] for line in text))
        return "\n".join(parts)

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class LocalCluster:
    """The overlay's pods on loopback ports, started from their containers' specs."""

    def __init__(self, overlay, root):
        self.overlay, self.root = overlay, root
        self.namespace = namespace_of(overlay)
        self.services = {s["metadata"]["name"]: s for s in objects(overlay, "Service")}
        self.secrets = {}
        self.processes = []
        # (pod name, workload) for every replica; StatefulSet pods are NAME-0.., Deployment
        # pods NAME-HASH-SUFFIX.
        self.pods = []
        for workload in workloads(overlay):
            name = workload["metadata"]["name"]
            for i in range(replicas(overlay, workload)):
                pod_name = f"{name}-{i}" if workload["kind"] == "StatefulSet" else f"{name}-5d8f7c9b6-p{i:04d}"
                self.pods.append((pod_name, workload))
        self.workload_of = dict(self.pods)
        # A free loopback port for every (pod, containerPort).
        taken = set()
        self.ports = {}
        for pod_name, workload in self.pods:
            for container in pod_spec(workload)["containers"]:
                for port in container.get("ports", []):
                    self.ports[(pod_name, port["containerPort"])] = free_port(taken)

    def secret(self, name):
        if name not in self.secrets:
            self.secrets[name] = secret_content(self.overlay, name)
        return self.secrets[name]

    # --- the network ---

    def container_port(self, pod_name, port):
        """The number of a pod's port given by number or name (targetPort, a probe's port)."""
        for container in pod_spec(self.workload_of[pod_name])["containers"]:
            for declared in container.get("ports", []):
                if declared["containerPort"] == port or declared.get("name") == port:
                    return declared["containerPort"]
        if isinstance(port, int):
            return port
        raise AssertionError(f"pod {pod_name} has no port named {port}")

    def local_port(self, pod_name, port):
        number = self.container_port(pod_name, port)
        assert (pod_name, number) in self.ports, f"pod {pod_name} declares no containerPort {number}"
        return self.ports[(pod_name, number)]

    def selected_pods(self, service):
        selector = service["spec"].get("selector", {})
        return [p for p, w in self.pods if selector and selects(selector, pod_labels(w))]

    def service_address(self, host, port):
        """127.0.0.1:PORT for `host:port` naming a Service of the overlay (`svc`, `svc.ns`,
        `svc.ns.svc[.cluster.local]`) or a pod under a headless Service
        (`pod.svc.ns.svc`); None for any other host."""
        labels = host.split(".")
        if labels[-2:] == ["cluster", "local"]:
            labels = labels[:-2]
        if labels[-1:] == ["svc"]:
            labels = labels[:-1]
        if len(labels) >= 2 and labels[-1] == self.namespace:
            labels = labels[:-1]
        if len(labels) == 1 and labels[0] in self.services:
            service = self.services[labels[0]]
            pods = self.selected_pods(service)
            assert pods, f"Service {labels[0]} selects no pod"
            if service["spec"].get("clusterIP") == "None":
                # Headless: the name resolves to the pods' IPs, dialled at the port as given.
                return f"127.0.0.1:{self.local_port(pods[0], port)}"
            entries = [p for p in service["spec"]["ports"] if p["port"] == port]
            assert entries, f"Service {labels[0]} has no port {port} (a connection to {host}:{port} would fail)"
            # kube-proxy spreads connections over the ready pods; here they go to the first.
            return f"127.0.0.1:{self.local_port(pods[0], entries[0].get('targetPort', port))}"
        if len(labels) == 2 and labels[1] in self.services:
            # A pod's own record under a headless Service: its hostname (a StatefulSet pod's
            # name) under the Service its workload names as serviceName.
            pod_name, service = labels
            workload = self.workload_of.get(pod_name)
            assert workload is not None and workload["spec"].get("serviceName") == service \
                and pod_name in self.selected_pods(self.services[service]), \
                f"{host} names no pod of the headless Service {service}"
            return f"127.0.0.1:{self.local_port(pod_name, port)}"
        return None

    def localize(self, pod_name, text):
        """`text` (an arg, an env value, a TOML string) with every host:port rewritten: the
        pod's own addresses and the overlay's Service names to loopback ports."""
        def one(match):
            host, port = match.group(1), int(match.group(2))
            if host in OWN_HOSTS and (pod_name, port) in self.ports:
                return f"127.0.0.1:{self.ports[(pod_name, port)]}"
            return self.service_address(host, port) or match.group(0)
        return ADDRESS.sub(one, text)

    def address(self, service_address):
        """Where a client outside the cluster reaches `svc:port` (kubectl port-forward svc/…)."""
        return self.localize(None, service_address)

    # --- the processes ---

    def start(self):
        for pod_name, workload in self.pods:
            spec = pod_spec(workload)
            assert not spec.get("initContainers"), f"{name_of(workload)}: init containers are not modelled here"
            for container in spec["containers"]:
                root = os.path.join(self.root, "pods", pod_name, container["name"])
                pod = LocalPod(self, workload, container, pod_name, root)
                self.processes.append(Process(pod, os.path.join(self.root, "logs")))

    def process(self, workload_name):
        found = [p for p in self.processes if p.pod.workload["metadata"]["name"] == workload_name]
        assert len(found) == 1, f"{len(found)} processes of {workload_name}"
        return found[0]

    def tails(self):
        return "\n".join(p.tail() for p in self.processes)

    def stop(self):
        """SIGTERM to every pod, the StatefulSets' (etcd) after the others have exited, each
        killed after its terminationGracePeriodSeconds; returns {name: exit code}."""
        codes = {}
        for stateful in (False, True):
            batch = [p for p in self.processes if (p.pod.workload["kind"] == "StatefulSet") == stateful]
            deadline = {}
            for p in batch:
                p.terminate()
                grace = pod_spec(p.pod.workload).get("terminationGracePeriodSeconds", 30)
                deadline[p] = time.monotonic() + min(grace, 30)
            for p in batch:
                try:
                    p.proc.wait(timeout=max(0.0, deadline[p] - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                codes[p.name] = p.proc.returncode
        return codes

    def kill(self):
        for p in self.processes:
            p.kill()


# --- probes, as the kubelet runs them ---------------------------------------------------


def _varint(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def health_check_request(service):
    """grpc.health.v1.HealthCheckRequest{service}, encoded by hand (no grpcio-health-checking)."""
    raw = service.encode()
    return (b"\x0a" + bytes([len(raw)]) + raw) if raw else b""


def health_check_status(data):
    """HealthCheckResponse.status (field 1, a varint): 1 is SERVING, 0 (absent) UNKNOWN."""
    i, status = 0, 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _varint(data, i)
            i += length
        else:
            raise AssertionError(f"unexpected wire type {wire} in HealthCheckResponse {data!r}")
    return status


SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def grpc_health(address, service, timeout):
    """The kubelet's gRPC probe: Health/Check over plaintext; success is SERVING."""
    with grpc.insecure_channel(address, options=[("grpc.primary_user_agent", "kube-probe/1.31")]) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda m: m, response_deserializer=lambda m: m)
        try:
            status = health_check_status(check(health_check_request(service), timeout=timeout))
        except grpc.RpcError as err:
            return False, f"{address}: {err.code().name} {err.details()}"
    return status == 1, f"{address}: {SERVING_STATUS.get(status, status)}"


def probe(cluster, process, probe_spec):
    """(success, detail) of one try of a probe of the process's container."""
    pod_name = process.pod.pod_name
    timeout = probe_spec.get("timeoutSeconds", PROBE_DEFAULTS["timeoutSeconds"])
    if probe_spec.get("grpc") is not None:
        handler = probe_spec["grpc"]
        address = f"127.0.0.1:{cluster.local_port(pod_name, handler['port'])}"
        return grpc_health(address, handler.get("service", ""), timeout)
    if probe_spec.get("httpGet") is not None:
        handler = probe_spec["httpGet"]
        scheme = handler.get("scheme", "HTTP").lower()
        url = f"{scheme}://127.0.0.1:{cluster.local_port(pod_name, handler['port'])}{handler.get('path', '/')}"
        headers = {h["name"]: h["value"] for h in handler.get("httpHeaders", [])}
        headers.setdefault("User-Agent", "kube-probe/1.31")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
                return 200 <= response.status < 400, f"{url}: {response.status}"
        except urllib.error.HTTPError as err:
            return False, f"{url}: {err.code} {err.read()[:200]!r}"
        except OSError as err:
            return False, f"{url}: {err}"
    if probe_spec.get("tcpSocket") is not None:
        port = cluster.local_port(pod_name, probe_spec["tcpSocket"]["port"])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
            return True, f"127.0.0.1:{port}: open"
        except OSError as err:
            return False, f"127.0.0.1:{port}: {err}"
    pytest.fail(f"{process.name}: probe {probe_spec} has no handler modelled here")


def wait_until_ready(cluster):
    """Runs each container's startupProbe until it succeeds (within the kubelet's budget for
    it after each (re)start: initialDelaySeconds + periodSeconds x failureThreshold), then
    its readinessProbe until it succeeds. A container that exits is restarted after a
    back-off, as restartPolicy Always does (the roles that store a service key exit at once
    when etcd does not answer yet: on a cluster that is a restart too); more than
    MAX_RESTARTS is a crash loop and fails the start."""
    started_at = time.monotonic()
    deadline = started_at + READY_DEADLINE
    while True:
        pending = [p for p in cluster.processes if not p.ready]
        if not pending:
            return time.monotonic() - started_at
        now = time.monotonic()
        for p in pending:
            container = p.pod.container
            if p.proc.poll() is not None:
                restart_at = p.exited()
                p.probe_error = f"exited {p.proc.returncode}"
                if p.restarts >= MAX_RESTARTS:
                    raise AssertionError(f"{p.name} crash-loops: {p.exit_summary()}")
                if now >= restart_at:
                    p.restart()
                continue
            if not p.started:
                spec = container.get("startupProbe")
                if spec is None:
                    p.started = True
                else:
                    budget = {k: spec.get(k, v) for k, v in PROBE_DEFAULTS.items()}
                    if now - p.started_at < budget["initialDelaySeconds"]:
                        continue
                    p.started, p.probe_error = probe(cluster, p, spec)
                    if not p.started and now - p.started_at > (
                            budget["initialDelaySeconds"] + budget["periodSeconds"] * budget["failureThreshold"]):
                        raise AssertionError(f"{p.name}: startupProbe failed past the kubelet's budget "
                                             f"({budget}): {p.probe_error}")
            if p.started:
                spec = container.get("readinessProbe")
                p.ready, p.probe_error = (True, "no readinessProbe") if spec is None else probe(cluster, p, spec)
        if time.monotonic() > deadline:
            raise AssertionError("not ready within %ds: %s" % (
                READY_DEADLINE, "; ".join(f"{p.name}: {p.probe_error}" for p in pending)))
        time.sleep(POLL)


# --- the fixture ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_cluster():
    root = work_dir("modelplane-deploy-run-")
    os.makedirs(os.path.join(root, "logs"))
    cluster = LocalCluster(OVERLAY, root)
    try:
        cluster.start()
        cluster.ready_after = wait_until_ready(cluster)
    except BaseException:
        print(cluster.tails())
        cluster.kill()
        remove_work_dir(root)
        raise
    print(f"{len(cluster.processes)} pods ready after {cluster.ready_after:.1f}s")
    yield cluster
    cluster.kill()
    remove_work_dir(root)


@pytest.fixture(scope="module")
def cli(local_cluster):
    """Runs `modelplane ARGS` from outside the cluster as docs/kubernetes.md's quick start does:
    the Services' ports (kubectl port-forward svc/registry 7001 …) and the admin key
    make-secrets.sh leaves in ./modelplane-admin.key (mode 0600)."""
    work = os.path.join(local_cluster.root, "cli")
    os.makedirs(work)
    key_path = os.path.join(work, "modelplane-admin.key")
    with open(key_path, "wb") as f:
        f.write(local_cluster.secret("modelplane-admin-key")["admin.key"])
    os.chmod(key_path, 0o600)
    env = clean_env(HOME=work, MODELPLANE_API_KEY_FILE=key_path,
                    MODELPLANE_REGISTRY=local_cluster.address("registry:7001"),
                    MODELPLANE_TRAINER=local_cluster.address("trainer:7002"),
                    MODELPLANE_ROUTER=local_cluster.address("router:8001"))

    def run(*args, timeout=180):
        done = subprocess.run([MODELPLANE, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=work)
        assert done.returncode == 0, (f"modelplane {' '.join(args)} exited {done.returncode}\n"
                                      f"stderr:\n{done.stderr}\nstdout:\n{done.stdout}")
        return done.stdout

    run.work, run.key = work, open(key_path).read().strip()
    return run


# --- the tests --------------------------------------------------------------------------


def test_every_pod_of_the_overlay_runs_and_is_ready(local_cluster):
    """What was started is what the overlay keeps, each with the overlay's command line,
    and every probe (liveness too) passes; the rewritten addresses left no pod-local
    name behind."""
    with logs_on_failure(local_cluster):
        started = Counter(p.pod.workload["metadata"]["name"] for p in local_cluster.processes)
        assert started == {w["metadata"]["name"]: replicas(OVERLAY, w) for w in workloads(OVERLAY)}
        for p in local_cluster.processes:
            assert p.proc.poll() is None, f"{p.name} exited {p.proc.returncode}"
            # All pods start at once, as after `kubectl apply`: a role that starts before
            # etcd answers waits for it instead of exiting into CrashLoopBackOff.
            assert p.restarts == 0, f"{p.name} restarted {p.restarts}x before it was ready: {p.exit_summary()}"
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if p.pod.container.get(kind):
                    ok, detail = probe(local_cluster, p, p.pod.container[kind])
                    assert ok, f"{p.name} {kind}: {detail}"
            # No address still names a Service or 0.0.0.0, in args, env or the --config file:
            # only the OTLP collector, which the overlay leaves to the user, is not ours.
            texts = p.argv + [v for k, v in p.pod.env.items() if k != "OTEL_EXPORTER_OTLP_ENDPOINT"]
            config = config_path(p.pod.args, p.pod.env)
            if config:
                texts.append(open(config).read())
            for text in texts:
                for match in ADDRESS.finditer(text):
                    host = match.group(1)
                    assert host.split(".")[0] not in local_cluster.services and host != "0.0.0.0", \
                        f"{p.name} still dials or listens on {match.group(0)}: {text}"
            # MODELPLANE_LOG_FORMAT=json: every line the running process wrote is a JSON object.
            if p.pod.env.get("MODELPLANE_LOG_FORMAT") == "json":
                with open(p.stderr_path) as f:
                    run = f.read().split("=== restart ")[-1].splitlines()[1 if p.restarts else 0:]
                for line in run:
                    assert line.startswith("{") and json.loads(line), f"{p.name}: not a JSON log line: {line}"


def test_train_deploy_and_serve_through_the_router_service(local_cluster, cli):
    with logs_on_failure(local_cluster):
        # A CSV that is exactly linear, so that the coefficients the model must find are known.
        rng = random.Random(11)
        path = os.path.join(cli.work, "lines.csv")
        with open(path, "w") as f:
            f.write("a,b,c,y\n")
            for _ in range(400):
                x = np.array([rng.uniform(0, 10), rng.uniform(-5, 5), rng.randint(1, 4)])
                f.write(f"{x[0]:.3f},{x[1]:.3f},{int(x[2])},{float(x @ COEFFICIENTS + INTERCEPT):.4f}\n")
        cli("datasets", "upload", path)
        cli("train", "lines", "--dataset", "lines", "--target", "y", "--kind", "linear", "--epochs", "60")
        cli("deploy", "lines", "--version", "1", "--wait", "120")

        # The worker registered under its pod's name at the address it advertises
        # ($(POD_IP):7003, i.e. its own loopback port here), and holds the version.
        worker = local_cluster.process("worker")
        listed = [json.loads(line) for line in cli("workers", "--output", "json").splitlines() if line.strip()]
        assert [(w["id"], w["addr"]) for w in listed] == [
            (worker.pod.pod_name, f"127.0.0.1:{local_cluster.local_port(worker.pod.pod_name, 'grpc')}")], listed
        assert ("lines", 1) in [(v["model"], v["version"]) for v in listed[0]["loaded"]], listed

        router = local_cluster.address("router:8001")
        client = grpcclient.InferenceServerClient(router)
        headers = {"authorization": f"Bearer {cli.key}"}
        x = grpcclient.InferInput("input", list(ROWS.shape), "FP32")
        x.set_data_from_numpy(ROWS)
        # The cluster roles admit no anonymous caller (docs/kubernetes.md).
        with pytest.raises(grpcclient.InferenceServerException) as refused:
            client.infer("lines", [x])
        assert "UNAUTHENTICATED" in str(refused.value.status()), refused.value
        assert client.is_model_ready("lines", headers=headers)
        got = client.infer("lines", [x], headers=headers).as_numpy("predictions")
        assert got.shape == (3, 1)
        # Exactly what the stored artifact computes: the dev overlay keeps blobs in the
        # registry pod's /data/blobs (MODELPLANE_BLOB_STORE), a directory here.
        registry = local_cluster.process("registry")
        artifacts = glob.glob(os.path.join(registry.pod.rewrite("/data/blobs"), "artifacts", "*"))
        assert len(artifacts) == 1, artifacts
        np.testing.assert_allclose(got, expected(artifacts[0], ROWS), rtol=1e-4)
        # And what the CSV was made of, to a training tolerance (it fits to ~1e-3 here).
        truth = (ROWS.astype(np.float64) @ COEFFICIENTS + INTERCEPT).reshape(3, 1)
        np.testing.assert_allclose(got, truth, atol=0.05)


def test_pods_stop_on_sigterm(local_cluster):
    """As a deleted pod does (no preStop hooks here): every process stops on SIGTERM within
    its terminationGracePeriodSeconds (capped at 30 s); the modelplane roles exit 0 (etcd
    re-raises the signal once it has shut down, so it ends by SIGTERM)."""
    with logs_on_failure(local_cluster):
        codes = local_cluster.stop()
        for p in local_cluster.processes:
            allowed = (0,) if is_modelplane(p.pod.container) else (0, -signal.SIGTERM)
            assert codes[p.name] in allowed, f"{p.name} exited {codes[p.name]} on SIGTERM: {codes}"
