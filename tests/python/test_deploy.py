"""The Kubernetes manifests in deploy/ against the binary they run.

Each overlay (deploy/overlays/dev, deploy/overlays/production) is rendered with
`kubectl kustomize`, and its objects are checked for what neither kustomize nor a cluster's
dry run catches before pods crash-loop:

- every object validates against Kubernetes' own schema (kubernetes-validate, offline and
  strict); custom resources, which it has no schema for, are skipped by an explicit list;
- Services, ServiceMonitors, probes, PodDisruptionBudgets, HorizontalPodAutoscalers and
  NetworkPolicies point at pods, Services and ports that exist;
- every Secret and ConfigMap a pod refers to is rendered, issued by a cert-manager
  Certificate of the overlay, or made by deploy/make-secrets.sh as the overlay's header
  says to run it, with the keys the pod mounts;
- every file named in args, env or a role's TOML under a ConfigMap or Secret mount is a key
  of that volume, `--config` names a mounted ConfigMap key, and every $(VAR) resolves;
- every MODELPLANE_* variable is one the binary reads, and every TOML key is a setting of
  the role (as crates/modelplane/src/config_file.rs maps keys to flags);
- `modelplane ROLE --check-config ARGS...` accepts each role's container as the pod would
  run it: its env resolved, its mounts in a temporary directory holding the ConfigMap's
  files, API keys in make-secrets.sh's form and PEM certificates made here.

No cluster and no `modelplane up`: the conftest fixtures are not used.
"""

import base64
import datetime
import functools
import ipaddress
import json
import math
import os
import re
import secrets
import shlex
import subprocess
import tomllib

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import BIN, REPO, clean_env

OVERLAYS = ["dev", "production"]
ROLES = ["registry", "trainer", "worker", "router"]
# kubernetes-validate's schemas, offline, for a current release.
KUBERNETES_VERSION = "1.31.0"
# Custom resources: kubernetes-validate ships schemas for Kubernetes' own kinds only.
CUSTOM_RESOURCES = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
# The keys of the Secret a cert-manager Certificate issues.
CERTIFICATE_KEYS = ("tls.crt", "tls.key", "ca.crt")
# MODELPLANE_* variables the binary reads itself rather than through clap (so that
# `--help` does not list them), with the file that reads each.
DIRECT_ENV = {
    "MODELPLANE_LOG_FORMAT": "crates/service/src/telemetry.rs",
    "MODELPLANE_ETCD_PASSWORD": "crates/modelplane/src/roles.rs",
}
# What a user puts in modelplane-s3 (make-secrets.sh's AWS_* variables).
S3_SAMPLE = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_REGION": "eu-west-1",
}
# conftest's BIN (MODELPLANE_BIN, else target/debug/modelplane), relative to the repository:
# the binary runs in a pod's directory, not where pytest started.
MODELPLANE = os.path.join(REPO, BIN)


def modelplane(*args, **kwargs):
    """Runs the binary under test (MODELPLANE_BIN, else target/debug/modelplane)."""
    assert os.path.exists(MODELPLANE), f"{MODELPLANE} does not exist: `cargo build -p modelplane`, or set MODELPLANE_BIN"
    return subprocess.run([MODELPLANE, *args], capture_output=True, text=True, timeout=120, **kwargs)


# --- rendering ------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def render(overlay):
    """The overlay's objects, as `kubectl kustomize` prints them."""
    path = os.path.join(REPO, "deploy", "overlays", overlay)
    done = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        version = subprocess.run(["kubectl", "version", "--client"], capture_output=True, text=True).stdout
        pytest.fail(f"kubectl kustomize {path} failed ({version.strip()}):\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc is not None)


def objects(overlay, *kinds):
    return [obj for obj in render(overlay) if obj["kind"] in kinds]


def name_of(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def namespace_of(overlay):
    (namespace,) = objects(overlay, "Namespace")
    return namespace["metadata"]["name"]


def workloads(overlay):
    return objects(overlay, *WORKLOAD_KINDS)


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(overlay):
    """(workload, container) for every container and init container."""
    for workload in workloads(overlay):
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield workload, container


def is_modelplane(container):
    image = container["image"].rsplit("/", 1)[-1]
    return re.split("[:@]", image)[0] == "modelplane"


def role_containers(overlay):
    """(workload, container, role) for the containers running the modelplane image."""
    for workload, container in containers(overlay):
        if is_modelplane(container):
            role = (container.get("args") or [None])[0]
            assert role in ROLES, f"{name_of(workload)}: container {container['name']} runs {container.get('args')}"
            yield workload, container, role


def role_container(overlay, role):
    found = [(w, c) for w, c, r in role_containers(overlay) if r == role]
    assert len(found) == 1, f"{overlay}: {len(found)} containers run `modelplane {role}`"
    return found[0]


def configmaps(overlay):
    return {cm["metadata"]["name"]: {**cm.get("data", {}), **cm.get("binaryData", {})}
            for cm in objects(overlay, "ConfigMap")}


def selects(selector, labels):
    """Whether a label selector (a Service's plain map, or matchLabels/matchExpressions)
    matches `labels`."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def selected(overlay, selector):
    return [w for w in workloads(overlay) if selects(selector, pod_labels(w))]


def has_port(container, port):
    """Whether `port` (a number or a name, as in targetPort, probes and policies) is one of
    the container's ports."""
    for declared in container.get("ports", []):
        if isinstance(port, int) or str(port).isdigit():
            if declared["containerPort"] == int(port):
                return True
        elif declared.get("name") == port:
            return True
    return False


def pod_has_port(workload, port):
    return any(has_port(c, port) for c in pod_spec(workload)["containers"])


# --- variables and mounts --------------------------------------------------------------

VARIABLE = re.compile(r"\$(\$|\(([^)]*)\))")


def expand(text, variables):
    """Kubernetes' $(VAR) expansion: `$$` is a literal `$`, an unknown $(VAR) stays."""
    def one(match):
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return variables.get(name, match.group(0))
    return VARIABLE.sub(one, text)


def references(text):
    return [m.group(2) for m in VARIABLE.finditer(text) if m.group(1) != "$"]


def config_path(args, env):
    """The --config value of the args (`--config X` or `--config=X`), else MODELPLANE_CONFIG,
    as crates/modelplane/src/config_file.rs finds it."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg[len("--config="):]
    return env.get("MODELPLANE_CONFIG")


def literal_env(container):
    """The env entries with a plain value, expanded as Kubernetes does (earlier ones only);
    entries from valueFrom are left out."""
    variables = {}
    for entry in container.get("env", []):
        if "value" in entry:
            variables[entry["name"]] = expand(str(entry["value"]), variables)
    return variables


def mount_of(workload, container, path):
    """(mount, volume, path inside the volume) of the deepest mount holding `path`."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    best = None
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/")
        if path == root or path.startswith(root + "/"):
            if best is None or len(root) > len(best[0]["mountPath"].rstrip("/")):
                best = (mount, volumes.get(mount["name"]), path[len(root):].lstrip("/"))
    return best


def volume_files(volume, keys):
    """{file name in the volume: key} of a configMap or secret volume whose source has
    `keys` (None: not known)."""
    source = volume.get("configMap") or volume.get("secret")
    if "items" in source:
        return {item["path"]: item["key"] for item in source["items"]}
    return {key: key for key in (keys or ())}


# --- the Secrets users make ------------------------------------------------------------

MAKE_SECRETS = os.path.join(REPO, "deploy", "make-secrets.sh")


@functools.lru_cache(maxsize=None)
def make_secrets():
    """The Secrets deploy/make-secrets.sh creates: {name: {keys, env_keys, conditions}}, keys
    None for an env file (whose variable names, from the script's loop, are env_keys),
    conditions the `if`s around the `kubectl create secret`."""
    text = open(MAKE_SECRETS).read().replace("\\\n", " ")
    made, conditions, loop_words = {}, [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("if "):
            conditions.append(line)
        elif line == "fi":
            conditions.pop()
        loop = re.match(r"for \w+ in ([^;]*); do", line)
        if loop:
            loop_words = loop.group(1).split()
        create = re.search(r"create secret generic (\S+)(.*)", line)
        if create:
            name, options = create.group(1), create.group(2)
            keys = set(re.findall(r"--from-file=([^=\s]+)=", options))
            env_file = "--from-env-file" in options
            made[name] = {"keys": None if env_file else keys, "env_keys": loop_words if env_file else None,
                          "conditions": tuple(conditions)}
    return made


def make_secrets_command(overlay):
    """The make-secrets.sh command line the overlay's header tells users to run."""
    header = open(os.path.join(REPO, "deploy", "overlays", overlay, "kustomization.yaml")).read()
    found = re.search(r"deploy/make-secrets\.sh ([^#\n]*)", header)
    assert found, f"deploy/overlays/{overlay}/kustomization.yaml does not say how to run deploy/make-secrets.sh"
    return shlex.split(found.group(1))


def user_secrets(overlay):
    """{name: keys or None} that make-secrets.sh makes when run as the overlay says."""
    namespace, *flags = make_secrets_command(overlay)
    assert namespace == namespace_of(overlay), f"{overlay}'s header runs make-secrets.sh for {namespace}"
    made, without_service_keys = {}, "--without-service-keys" in flags
    for name, secret in make_secrets().items():
        if without_service_keys and any('"$service_keys" = yes' in c for c in secret["conditions"]):
            continue
        made[name] = secret["keys"]
    return made


def secret_sources(overlay):
    """{Secret name: its keys (None: any, from an env file)} the overlay's pods can count
    on: rendered Secrets, the Secrets of its cert-manager Certificates, make-secrets.sh's."""
    sources = dict(user_secrets(overlay))
    for certificate in objects(overlay, "Certificate"):
        sources[certificate["spec"]["secretName"]] = set(CERTIFICATE_KEYS)
    for secret in objects(overlay, "Secret"):
        sources[secret["metadata"]["name"]] = set(secret.get("data", {})) | set(secret.get("stringData", {}))
    return sources


@functools.lru_cache(maxsize=None)
def new_api_key_format():
    """make-secrets.sh's new_key(): its printf format and the `openssl rand -hex N` widths."""
    text = open(MAKE_SECRETS).read()
    found = re.search(r"new_key\(\) \{ printf '([^']*)' (.*?); \}", text)
    assert found, "deploy/make-secrets.sh has no new_key() { printf ...; }"
    widths = [int(n) for n in re.findall(r"openssl rand -hex (\d+)", found.group(2))]
    return found.group(1).replace("\\n", "\n"), widths


def new_api_key():
    """A key as make-secrets.sh makes one (mpk_<id>_<secret>)."""
    fmt, widths = new_api_key_format()
    return (fmt % tuple(secrets.token_hex(n) for n in widths)).encode()


# --- certificates ------------------------------------------------------------------------


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class Pki:
    """The namespace CA (modelplane-ca) and, for each cert-manager Certificate, the Secret
    it would issue: tls.crt, tls.key (PKCS#8 or PKCS#1 as the spec says) and ca.crt."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name("modelplane-ca")).issuer_name(_name("modelplane-ca"))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, spec):
        private = spec.get("privateKey", {})
        if private.get("algorithm", "RSA") == "ECDSA":
            key = ec.generate_private_key({256: ec.SECP256R1(), 384: ec.SECP384R1()}[private.get("size", 256)])
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=private.get("size", 2048))
        names = [x509.DNSName(n) for n in spec.get("dnsNames", [])]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in spec.get("ipAddresses", [])]
        names += [x509.UniformResourceIdentifier(u) for u in spec.get("uris", [])]
        usages = spec.get("usages", ["digital signature", "key encipherment"])
        eku = [{"server auth": ExtendedKeyUsageOID.SERVER_AUTH, "client auth": ExtendedKeyUsageOID.CLIENT_AUTH}[u]
               for u in usages if u in ("server auth", "client auth")]
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(_name(spec.get("commonName", "")))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature="digital signature" in usages,
                                                key_encipherment="key encipherment" in usages,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pkcs8 = private.get("encoding", "PKCS1") == "PKCS8"
        key_format = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
        return {
            "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
            "tls.key": key.private_bytes(serialization.Encoding.PEM, key_format, serialization.NoEncryption()),
            "ca.crt": self.cert.public_bytes(serialization.Encoding.PEM),
        }


@functools.lru_cache(maxsize=None)
def pki():
    return Pki()


def secret_content(overlay, name):
    """Made-up content of the Secret `name`, in the form its maker gives it."""
    for secret in objects(overlay, "Secret"):
        if secret["metadata"]["name"] == name:
            content = {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
            content.update({k: v.encode() for k, v in secret.get("stringData", {}).items()})
            return content
    for certificate in objects(overlay, "Certificate"):
        if certificate["spec"]["secretName"] == name:
            return pki().issue(certificate["spec"])
    made = make_secrets()[name]
    if made["keys"] is None:
        assert set(S3_SAMPLE) <= set(made["env_keys"]), f"make-secrets.sh writes {made['env_keys']} into {name}"
        return {k: v.encode() for k, v in S3_SAMPLE.items()}
    return {key: new_api_key() for key in made["keys"]}


# --- the binary --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def role_help(role):
    done = modelplane(role, "--help", env=clean_env())
    assert done.returncode == 0, f"{MODELPLANE} {role} --help: {done.stderr}"
    return done.stdout


def known_env(role):
    """The variables `modelplane ROLE` reads: clap's `[env: NAME=]` and DIRECT_ENV."""
    return set(re.findall(r"\[env:\s*(MODELPLANE_\w+)[=\]]", role_help(role))) | set(DIRECT_ENV)


def long_flags(role):
    """The long flags `modelplane ROLE --help` lists (not their aliases)."""
    return set(re.findall(r"(?m)^ {2,6}(?:-\w, )?--([a-z0-9][a-z0-9-]*)", role_help(role)))


@functools.lru_cache(maxsize=None)
def explicit_longs():
    """{long flag: clap id} where the source names the flag (`#[arg(long = "mtls-role")]`
    on `mtls_roles`): the only flags whose id is not the long name with `_` for `-`."""
    found = {}
    for source in ("roles.rs", "access_args.rs"):
        text = open(os.path.join(REPO, "crates", "modelplane", "src", source)).read()
        pattern = r'#\[arg\(long = "([^"]+)"[^\n]*\n(?:\s*(?:///|#\[)[^\n]*\n)*\s*pub (\w+):'
        found.update(dict(re.findall(pattern, text)))
    return found


def toml_keys(role):
    """{TOML key: the flag it sets} for `modelplane ROLE --config`. config_file.rs takes a
    key, turns `-` into `_` and looks for an argument with that id and a long flag, other
    than `config`: so a key is a flag's id with `-` for `_`."""
    keys = {}
    for flag in long_flags(role) - {"config", "help", "version"}:
        clap_id = explicit_longs().get(flag, flag.replace("-", "_"))
        keys[clap_id.replace("_", "-")] = flag
    return keys


# --- a pod in a directory -------------------------------------------------------------

FIELDS = {
    "metadata.namespace": lambda workload, overlay: namespace_of(overlay),
    "metadata.name": lambda workload, overlay: workload["metadata"]["name"]
    + ("-0" if workload["kind"] == "StatefulSet" else "-6f9c7d5b8-x2k4q"),
    "spec.nodeName": lambda workload, overlay: "node-a",
    "spec.serviceAccountName": lambda workload, overlay: pod_spec(workload).get("serviceAccountName", "default"),
    "status.podIP": lambda workload, overlay: "127.0.0.1",
    "status.hostIP": lambda workload, overlay: "127.0.0.2",
}
QUANTITY = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text):
    number, suffix = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()
    return float(number) * QUANTITY[suffix]


class Pod:
    """A container laid out under `root` as its pod would see it: every volume mount a
    directory of `root/mounts` holding the ConfigMap's or Secret's files, its env resolved
    (field references made up, Secrets with made-up content), every path under a mount in
    args, env and the TOML config rewritten to the directory."""

    def __init__(self, overlay, workload, container, root):
        self.overlay, self.workload, self.container = overlay, workload, container
        self.mounts_dir = os.path.join(root, "mounts")
        self.mount_paths = sorted((m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])),
                                  key=len, reverse=True)
        self.secrets = {}
        self.lay_out_volumes()
        self.env = self.resolve_env()
        self.args = [self.rewrite_arg(expand(arg, self.env)) for arg in container.get("args", [])]
        self.rewrite_config()
        # The image's WORKDIR (deploy/Dockerfile), if the pod mounts it.
        workdir = self.rewrite("/data")
        self.cwd = workdir if workdir != "/data" else os.path.join(root, "workdir")
        os.makedirs(self.cwd, exist_ok=True)

    def secret(self, name):
        if name not in self.secrets:
            self.secrets[name] = secret_content(self.overlay, name)
        return self.secrets[name]

    def local(self, mount_path):
        return os.path.join(self.mounts_dir, mount_path.strip("/"))

    def rewrite(self, value):
        """`value` with a leading mount path replaced by its directory here."""
        for root in self.mount_paths:
            if value == root or value.startswith(root + "/"):
                return self.local(root) + value[len(root):]
        return value

    def rewrite_arg(self, arg):
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            return f"{flag}={self.rewrite(value)}"
        return self.rewrite(arg)

    def lay_out_volumes(self):
        volumes = {v["name"]: v for v in pod_spec(self.workload).get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            assert "subPath" not in mount, f"{name_of(self.workload)}: subPath mounts are not modelled here"
            directory = self.local(mount["mountPath"])
            os.makedirs(directory, exist_ok=True)
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                data = configmaps(self.overlay)[volume["configMap"]["name"]]
                content = {k: v.encode() for k, v in data.items()}
            elif "secret" in volume:
                content = self.secret(volume["secret"]["secretName"])
            else:
                continue  # emptyDir, PVC: an empty directory
            for path, key in volume_files(volume, content).items():
                os.makedirs(os.path.dirname(os.path.join(directory, path)), exist_ok=True)
                with open(os.path.join(directory, path), "wb") as f:
                    f.write(content[key])

    def resolve_env(self):
        env = {}
        for source in self.container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                content = {k: v.decode() for k, v in self.secret(source["secretRef"]["name"]).items()}
            else:
                content = configmaps(self.overlay)[source["configMapRef"]["name"]]
            env.update({prefix + k: v for k, v in content.items()})
        for entry in self.container.get("env", []):
            env[entry["name"]] = self.rewrite(self.env_value(entry, env))
        return env

    def env_value(self, entry, env):
        if "value" in entry:
            return expand(str(entry["value"]), env)
        source = entry["valueFrom"]
        if "fieldRef" in source:
            return FIELDS[source["fieldRef"]["fieldPath"]](self.workload, self.overlay)
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            spec = next(c for c in pod_spec(self.workload)["containers"]
                        if c["name"] == ref.get("containerName", self.container["name"]))
            kind, resource = ref["resource"].split(".")
            amount = quantity(spec["resources"][kind][resource]) / quantity(ref.get("divisor", "1"))
            return str(math.ceil(amount))
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return self.secret(ref["name"])[ref["key"]].decode()
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return configmaps(self.overlay)[ref["name"]][ref["key"]]
        raise AssertionError(f"{name_of(self.workload)}: env {entry['name']} from {source}")

    def rewrite_config(self):
        """Rewrites the paths in the --config file (the copy under mounts/)."""
        path = config_path(self.args, self.env)
        if path is None:
            return
        with open(path, "rb") as f:
            table = tomllib.load(f)
        with open(path, "w") as f:
            for key, value in table.items():
                if isinstance(value, str):
                    text = json.dumps(self.rewrite(value))
                elif isinstance(value, bool):
                    text = str(value).lower()
                elif isinstance(value, (int, float)):
                    text = repr(value)
                else:
                    raise AssertionError(f"{path}: {key} is a {type(value).__name__}")
                f.write(f"{key} = {text}\n")

    def check_config(self, extra_args=()):
        role, *rest = self.args
        args = [role, "--check-config", *rest, *extra_args]
        return [MODELPLANE, *args], modelplane(*args, env=clean_env(**self.env), cwd=self.cwd)


# --- 1. rendering and schemas -------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(overlay):
    objs = render(overlay)
    for obj in objs:
        assert obj.get("apiVersion") and obj.get("kind") and obj.get("metadata", {}).get("name"), obj
    assert {w["metadata"]["name"] for w in workloads(overlay)} == {"etcd", *ROLES}
    assert sorted(r for _, _, r in role_containers(overlay)) == sorted(ROLES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_match_kubernetes_schemas(overlay):
    errors, validated, skipped = [], 0, 0
    for obj in render(overlay):
        custom = (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            validated += 1
        except kubernetes_validate.SchemaNotFoundError as err:
            if custom:
                skipped += 1
            else:
                errors.append(f"{name_of(obj)}: {err.message}")
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{name_of(obj)}: {'.'.join(map(str, err.path))}: {err.message}")
    assert not errors, "\n".join(errors)
    assert validated + skipped == len(render(overlay)) and validated > 0


# --- 2. what points at what -------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_with_their_target_ports(overlay):
    """Each Service selects a pod template, and each of its targetPorts is a port of every
    pod template it selects (a pod without it would get no endpoint for that port)."""
    errors = []
    for service in objects(overlay, "Service"):
        pods = selected(overlay, service["spec"].get("selector", {}))
        if not pods:
            errors.append(f"{name_of(service)} selects no pod template")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            missing = [name_of(w) for w in pods if not pod_has_port(w, target)]
            if missing:
                errors.append(f"{name_of(service)} port {port['port']}: targetPort {target} is no port of {missing}")
    # The Prometheus Operator's ServiceMonitors select Services and name their ports.
    for monitor in objects(overlay, "ServiceMonitor"):
        services = [s for s in objects(overlay, "Service")
                    if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))]
        if not services:
            errors.append(f"{name_of(monitor)} selects no Service")
        for endpoint in monitor["spec"]["endpoints"]:
            if "port" in endpoint and not any(p.get("name") == endpoint["port"] for s in services for p in s["spec"]["ports"]):
                errors.append(f"{name_of(monitor)}: no selected Service has a port named {endpoint['port']}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_container_ports(overlay):
    errors = []
    for workload, container in containers(overlay):
        for probe_kind in PROBES:
            probe = container.get(probe_kind)
            if probe is None:
                continue
            where = f"{name_of(workload)} {container['name']} {probe_kind}"
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
            if len(handlers) != 1:
                errors.append(f"{where}: {len(handlers)} handlers ({handlers}); Kubernetes wants one")
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if probe.get(handler) is not None and not has_port(container, probe[handler]["port"]):
                    errors.append(f"{where}: port {probe[handler]['port']} is not a port of the container")
    assert not errors, "\n".join(errors)


def replicas(overlay, workload):
    """The pods a workload keeps: its HPA's minimum if one targets it, else its replicas."""
    for hpa in objects(overlay, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) == (workload["kind"], workload["metadata"]["name"]):
            return hpa["spec"].get("minReplicas", 1)
    return workload["spec"].get("replicas", 1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_autoscalers_target_workloads(overlay):
    errors = []
    for pdb in objects(overlay, "PodDisruptionBudget"):
        pods = selected(overlay, pdb["spec"]["selector"])
        if not pods:
            errors.append(f"{name_of(pdb)} selects no pod template")
        # A budget the workload can never meet blocks every node drain.
        minimum = pdb["spec"].get("minAvailable")
        if isinstance(minimum, int) and pods and sum(replicas(overlay, w) for w in pods) <= minimum:
            errors.append(f"{name_of(pdb)}: minAvailable {minimum} of {sum(replicas(overlay, w) for w in pods)} pods")
    by_ref = {(w["apiVersion"], w["kind"], w["metadata"]["name"]): w for w in workloads(overlay)}
    for hpa in objects(overlay, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = by_ref.get((ref["apiVersion"], ref["kind"], ref["name"]))
        if target is None:
            errors.append(f"{name_of(hpa)}: scaleTargetRef {ref} is not in the overlay")
        elif "replicas" in target["spec"]:
            # Every apply would reset the count the autoscaler chose.
            errors.append(f"{name_of(hpa)}: {name_of(target)} sets replicas, which the HPA owns")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_select_workloads_and_their_ports(overlay):
    errors = []
    for policy in objects(overlay, "NetworkPolicy"):
        pods = selected(overlay, policy["spec"]["podSelector"])
        if not pods:
            errors.append(f"{name_of(policy)} selects no pod template")
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer and not selected(overlay, peer["podSelector"]):
                    errors.append(f"{name_of(policy)}: from {peer['podSelector']} selects no pod template")
            for port in rule.get("ports", []):
                if "port" in port and not any(pod_has_port(w, port["port"]) for w in pods):
                    errors.append(f"{name_of(policy)}: port {port['port']} is no container port of "
                                  f"{[name_of(w) for w in pods]}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_and_configmaps_referred_to_exist(overlay):
    """Every Secret and ConfigMap a pod names, with every key it names. Secrets the user
    makes must come from make-secrets.sh run as the overlay's header says."""
    secret_keys, configmap_keys = secret_sources(overlay), {n: set(d) for n, d in configmaps(overlay).items()}
    errors = []

    def check(where, kind, name, keys, optional=False):
        sources = secret_keys if kind == "Secret" else configmap_keys
        if name not in sources:
            if not optional:
                errors.append(f"{where}: {kind} {name} is neither in the overlay nor made by make-secrets.sh")
            return
        for key in keys:
            if sources[name] is None or key not in sources[name]:
                errors.append(f"{where}: {kind} {name} has no key {key} (it has {sources[name]})")

    for workload in workloads(overlay):
        for volume in pod_spec(workload).get("volumes", []):
            where = f"{name_of(workload)} volume {volume['name']}"
            for kind, source in (("Secret", volume.get("secret")), ("ConfigMap", volume.get("configMap"))):
                if source is not None:
                    name = source.get("secretName") or source.get("name")
                    check(where, kind, name, [i["key"] for i in source.get("items", [])], source.get("optional", False))
    for workload, container in containers(overlay):
        where = f"{name_of(workload)} {container['name']}"
        for source in container.get("envFrom", []):
            for kind, ref in (("Secret", source.get("secretRef")), ("ConfigMap", source.get("configMapRef"))):
                if ref is not None:
                    check(f"{where} envFrom", kind, ref["name"], [], ref.get("optional", False))
        for entry in container.get("env", []):
            value_from = entry.get("valueFrom", {})
            for kind, ref in (("Secret", value_from.get("secretKeyRef")), ("ConfigMap", value_from.get("configMapKeyRef"))):
                if ref is not None:
                    check(f"{where} env {entry['name']}", kind, ref["name"], [ref["key"]], ref.get("optional", False))
    # cert-manager: every Certificate's Issuer is in the overlay, and a CA Issuer's Secret
    # is issued by a CA Certificate of the overlay.
    issuers = {i["metadata"]["name"]: i for i in objects(overlay, "Issuer")}
    ca_secrets = {c["spec"]["secretName"] for c in objects(overlay, "Certificate") if c["spec"].get("isCA")}
    for certificate in objects(overlay, "Certificate"):
        ref = certificate["spec"]["issuerRef"]
        if ref.get("kind", "Issuer") == "Issuer" and ref["name"] not in issuers:
            errors.append(f"{name_of(certificate)}: Issuer {ref['name']} is not in the overlay")
    for issuer in issuers.values():
        if "ca" in issuer["spec"] and issuer["spec"]["ca"]["secretName"] not in ca_secrets:
            errors.append(f"{name_of(issuer)}: no CA Certificate issues {issuer['spec']['ca']['secretName']}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_file_is_a_mounted_configmap_key(overlay):
    errors = []
    for workload, container, role in role_containers(overlay):
        where = f"{name_of(workload)} {container['name']}"
        path = config_path(container["args"], literal_env(container))
        if path is None:
            errors.append(f"{where}: no --config")
            continue
        found = mount_of(workload, container, path)
        if found is None or found[1] is None or "configMap" not in found[1]:
            errors.append(f"{where}: --config {path} is not on a ConfigMap mount")
            continue
        _, volume, inside = found
        data = configmaps(overlay).get(volume["configMap"]["name"])
        key = volume_files(volume, data).get(inside)
        if data is None or key not in data:
            errors.append(f"{where}: --config {path}: ConfigMap {volume['configMap']['name']} has no file {inside}")
    assert not errors, "\n".join(errors)


def path_values(overlay, workload, container):
    """(where, value) of every absolute path the container names: in its args (also as
    `--flag=path`), its env values and its role's TOML config."""
    env = literal_env(container)
    args = [expand(a, env) for a in container.get("command", []) + container.get("args", [])]
    for arg in args:
        yield "args", arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
    for name, value in env.items():
        yield f"env {name}", value
    path = config_path(container.get("args", []), env) if is_modelplane(container) else None
    found = path and mount_of(workload, container, path)
    if found and found[1] and "configMap" in found[1]:
        _, volume, inside = found
        data = configmaps(overlay).get(volume["configMap"]["name"], {})
        key = volume_files(volume, data).get(inside)
        # (A --config naming no file of the ConfigMap is test_config_file_is_a_mounted_configmap_key's.)
        for setting, value in tomllib.loads(data[key]).items() if key in data else ():
            if isinstance(value, str):
                yield f"{path} {setting}", value


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_files_named_under_mounts_are_keys_of_the_volume(overlay):
    """A path in args, env or the TOML that lies under a ConfigMap or Secret mount names a
    file the volume has (a key, or an item's path)."""
    secret_keys = secret_sources(overlay)
    configmap_data = configmaps(overlay)
    errors = []
    for workload, container in containers(overlay):
        for where, value in path_values(overlay, workload, container):
            found = value.startswith("/") and mount_of(workload, container, value)
            if not found or found[1] is None:
                continue
            _, volume, inside = found
            if "secret" in volume:
                keys = secret_keys.get(volume["secret"]["secretName"])
            elif "configMap" in volume:
                keys = configmap_data.get(volume["configMap"]["name"])
            else:
                continue  # emptyDir, PVC: the process makes its files
            files = volume_files(volume, keys)
            if inside not in files:
                errors.append(f"{name_of(workload)} {container['name']} {where}: {value} is not a file of volume "
                              f"{volume['name']} (it has {sorted(files)})")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_variable_references_resolve(overlay):
    """Kubernetes expands $(VAR) in env from the entries before it, and in command and args
    from all of them; anything else stays in the value as written."""
    errors = []
    for workload, container in containers(overlay):
        where = f"{name_of(workload)} {container['name']}"
        defined = []
        for entry in container.get("env", []):
            if entry["name"] in defined:
                errors.append(f"{where}: env {entry['name']} is set twice")
            for name in references(str(entry.get("value", ""))):
                if name not in defined:
                    errors.append(f"{where}: env {entry['name']} refers to $({name}), not defined before it")
            defined.append(entry["name"])
        for arg in container.get("command", []) + container.get("args", []):
            errors += [f"{where}: {arg!r} refers to $({n}), not in env" for n in references(arg) if n not in defined]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_names_are_known_to_the_binary(overlay):
    for name, source in DIRECT_ENV.items():
        assert f'"{name}"' in open(os.path.join(REPO, source)).read(), f"{source} no longer reads {name}"
    errors = []
    for workload, container, role in role_containers(overlay):
        for entry in container.get("env", []):
            if entry["name"].startswith("MODELPLANE_") and entry["name"] not in known_env(role):
                errors.append(f"{name_of(workload)}: `modelplane {role}` reads no {entry['name']}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_keys_are_settings_of_the_role(overlay):
    errors = []
    for workload, container, role in role_containers(overlay):
        path = config_path(container["args"], literal_env(container))
        _, volume, inside = mount_of(workload, container, path)
        data = configmaps(overlay)[volume["configMap"]["name"]]
        table = tomllib.loads(data[volume_files(volume, data)[inside]])
        keys = toml_keys(role)
        for key, value in table.items():
            if key not in keys:
                flag = f" (--{key} is a flag, but config_file.rs matches clap ids)" if key in long_flags(role) else ""
                errors.append(f"{path}: {key} is no setting of `modelplane {role}`{flag}")
            if not isinstance(value, (str, int, float, bool)):
                errors.append(f"{path}: {key} is a {type(value).__name__}; config_file.rs takes strings, "
                              "numbers and booleans")
    assert not errors, "\n".join(errors)


# --- 3. the binary accepts each role's configuration ------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_check_config_accepts_the_pod(overlay, role, tmp_path):
    workload, container = role_container(overlay, role)
    pod = Pod(overlay, workload, container, str(tmp_path))
    argv, done = pod.check_config()
    assert done.returncode == 0, (f"{shlex.join(argv)} exited {done.returncode}\nstderr:\n{done.stderr}\n"
                                  f"stdout:\n{done.stdout}")
    assert len(done.stdout.splitlines()) == 1, f"--check-config printed, not one line:\n{done.stdout}"


def test_check_config_names_a_missing_certificate(tmp_path):
    workload, container = role_container("production", "registry")
    pod = Pod("production", workload, container, str(tmp_path))
    missing = os.path.join(pod.local("/var/run/secrets/modelplane/tls"), "missing.crt")
    argv, done = pod.check_config(["--tls-cert", missing])
    assert done.returncode != 0, f"{shlex.join(argv)} accepted a missing certificate:\n{done.stdout}"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and missing in lines[0], f"expected one line naming {missing}:\n{done.stderr}"
