"""TLS and mTLS as Triton clients and the CLI meet them: `modelplane up` serving TLS on
every listener (certificates made here, with the `cryptography` package), tritonclient.grpc
with `ssl=True` and the CA, tritonclient.http over https, the CLI with `--tls-ca`; a
plaintext client refused; under mTLS a client without a certificate refused at the
handshake; and a certificate renewed in place served without a restart."""

import datetime
import ipaddress
import os
import ssl
import subprocess
import time

import gevent.ssl
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import BIN, clean_env, remove_work_dir, start_up, work_dir


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


class Ca:
    """A throwaway certificate authority that writes PEM files into `directory`."""

    def __init__(self, directory, name):
        self.directory, self.name = directory, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = os.path.join(directory, f"{name}.pem")
        _write(self.pem, self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem, common_name):
        """A leaf for localhost and 127.0.0.1, good for serving and as a client; returns
        (cert path, key path) named after `stem`."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(san, critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_path = os.path.join(self.directory, f"{stem}.pem")
        key_path = os.path.join(self.directory, f"{stem}.key")
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        # Written next to the final names and renamed: a reader never sees half a file.
        for path, data in [(key_path, key_pem), (cert_path, cert.public_bytes(serialization.Encoding.PEM))]:
            _write(path + ".new", data)
            os.replace(path + ".new", path)
        return cert_path, key_path


def read(path):
    with open(path, "rb") as f:
        return f.read()


ROW = np.array([[120, 3, 10]], dtype=np.float32)


def train_and_deploy(cli_env, work):
    rows = ["area,rooms,age,price"] + [f"{50 + i},{1 + i % 5},{i % 30},{1000 * i + 7}" for i in range(100)]
    with open(os.path.join(work, "small.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    for args in (["datasets", "upload", "small.csv", "--name", "small"],
                 ["train", "small", "--dataset", "small", "--target", "price", "--epochs", "5"],
                 ["deploy", "small", "--version", "1", "--wait", "60"]):
        done = subprocess.run([BIN, *args], env=cli_env, cwd=work, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{args}: {done.stderr}"


def grpc_infer(client):
    x = grpcclient.InferInput("input", list(ROW.shape), "FP32")
    x.set_data_from_numpy(ROW)
    return client.infer("small", [x]).as_numpy("predictions")


@pytest.fixture(scope="module")
def tls_up():
    work = work_dir("modelplane-tls-")
    ca = Ca(work, "ca")
    cert, key = ca.issue("server", "modelplane")
    proc, addrs, cli_env = start_up(work, ["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca.pem])
    cli_env = dict(cli_env, MODELPLANE_TLS_CA=ca.pem)
    try:
        train_and_deploy(cli_env, work)
        yield work, ca, addrs, cli_env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        remove_work_dir(work)


def test_triton_clients_and_the_cli_speak_tls_and_plaintext_is_refused(tls_up):
    work, ca, addrs, cli_env = tls_up
    secure = grpcclient.InferenceServerClient(addrs["router"], ssl=True, root_certificates=ca.pem)
    assert secure.is_server_ready()
    expected = grpc_infer(secure)
    assert expected.shape == (1, 1)

    https = httpclient.InferenceServerClient(addrs["router-http"], ssl=True, ssl_options={"ca_certs": ca.pem},
                                             ssl_context_factory=gevent.ssl.create_default_context)
    x = httpclient.InferInput("input", list(ROW.shape), "FP32")
    x.set_data_from_numpy(ROW)
    np.testing.assert_allclose(https.infer("small", [x]).as_numpy("predictions"), expected, rtol=1e-6)

    listed = subprocess.run([BIN, "models", "list"], env=cli_env, cwd=work, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0 and "small" in listed.stdout, listed.stderr

    plaintext = grpcclient.InferenceServerClient(addrs["router"])
    with pytest.raises(grpcclient.InferenceServerException):
        plaintext.is_server_live()
    no_tls_cli = dict(cli_env)
    del no_tls_cli["MODELPLANE_TLS_CA"]
    refused = subprocess.run([BIN, "models", "list"], env=no_tls_cli, cwd=work, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0


def test_a_certificate_renewed_in_place_is_served_without_a_restart(tls_up):
    work, ca, addrs, _ = tls_up
    renewed_by = Ca(work, "ca-2")
    renewed_by.issue("server", "modelplane-renewed")  # overwrites the files the router serves
    deadline = time.monotonic() + 30
    while True:
        try:
            client = grpcclient.InferenceServerClient(addrs["router"], ssl=True, root_certificates=renewed_by.pem)
            assert client.is_server_live()
            break
        except grpcclient.InferenceServerException:
            assert time.monotonic() < deadline, "the renewed certificate was never served"
            time.sleep(0.2)
    with pytest.raises(grpcclient.InferenceServerException):
        grpcclient.InferenceServerClient(addrs["router"], ssl=True, root_certificates=ca.pem).is_server_live()
    context = ssl.create_default_context(cafile=renewed_by.pem)
    import socket
    host, port = addrs["router-http"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            assert subject["commonName"] == "modelplane-renewed", "the REST port serves the renewal too"


def test_mtls_refuses_a_client_without_a_certificate_at_the_handshake():
    work = work_dir("modelplane-mtls-")
    ca = Ca(work, "ca")
    cert, key = ca.issue("server", "modelplane")
    client_cert, client_key = ca.issue("client", "tritonclient")
    stranger = Ca(work, "stranger")
    stranger_cert, stranger_key = stranger.issue("stranger", "stranger")
    proc, addrs, cli_env = start_up(work, ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.pem],
                                    env=clean_env())
    try:
        cli_env = dict(cli_env, MODELPLANE_TLS_CA=ca.pem, MODELPLANE_TLS_CLIENT_CERT=client_cert,
                       MODELPLANE_TLS_CLIENT_KEY=client_key)
        train_and_deploy(cli_env, work)
        trusted = grpcclient.InferenceServerClient(addrs["router"], ssl=True, root_certificates=ca.pem,
                                                   private_key=client_key, certificate_chain=client_cert)
        assert grpc_infer(trusted).shape == (1, 1)
        for private_key, chain in [(None, None), (stranger_key, stranger_cert)]:
            client = grpcclient.InferenceServerClient(addrs["router"], ssl=True, root_certificates=ca.pem,
                                                      private_key=private_key, certificate_chain=chain)
            with pytest.raises(grpcclient.InferenceServerException):
                client.is_server_live()
        https = httpclient.InferenceServerClient(
            addrs["router-http"], ssl=True, ssl_context_factory=gevent.ssl.create_default_context,
            ssl_options={"ca_certs": ca.pem, "certfile": client_cert, "keyfile": client_key})
        assert https.is_server_ready()
        without = httpclient.InferenceServerClient(addrs["router-http"], ssl=True,
                                                   ssl_context_factory=gevent.ssl.create_default_context,
                                                   ssl_options={"ca_certs": ca.pem})
        with pytest.raises(Exception):
            without.is_server_ready()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        remove_work_dir(work)
