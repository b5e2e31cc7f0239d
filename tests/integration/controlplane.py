"""A real Kubernetes control plane (etcd + kube-apiserver) for tests, the envtest way.

The binaries are found like controller-runtime's envtest finds them: the folder named by
``KUBEBUILDER_ASSETS``, else the newest ``<version>-<os>-<arch>`` folder under
``$XDG_DATA_HOME/kubebuilder-envtest/k8s`` (``~/.local/share`` by default) that holds both
``etcd`` and ``kube-apiserver``. One control plane runs per test session, on free loopback
ports, in a temporary folder that is removed at the end; without binaries the tests that
need it are skipped with the places looked at.

What this is not: a cluster. Nothing schedules or runs pods; the API server stores,
validates, defaults and admits objects, which is what CRD and operator tests need.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client, config
from kubernetes.client.rest import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = REPO_ROOT / "manifests" / "crds" / "spotwise.dev_scalingpolicies.yaml"
ASSETS_ENV = "KUBEBUILDER_ASSETS"
BINARIES = ("etcd", "kube-apiserver")
# Startup and CRD establishment normally take seconds; the limits only stop a hung server
# from hanging the session.
START_TIMEOUT_S = 90.0
ESTABLISH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class ControlPlane:
    """A running control plane: where it listens and how to talk to it as cluster admin."""

    server: str
    kubeconfig: Path
    ca_file: Path
    token: str
    assets: Path

    def api_client(self) -> client.ApiClient:
        """A new Kubernetes client authenticated as a member of system:masters."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))


def envtest_store() -> Path:
    """The folder setup-envtest installs versions into."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "kubebuilder-envtest" / "k8s"


def has_binaries(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in BINARIES)


def _version_key(folder: Path) -> tuple[int, ...]:
    numbers = re.match(r"(\d+)\.(\d+)\.(\d+)", folder.name)
    return tuple(int(n) for n in numbers.groups()) if numbers else (-1,)


def find_assets() -> Path:
    """The folder with etcd and kube-apiserver; FileNotFoundError says where it looked."""
    wanted = " and ".join(BINARIES)
    named = os.environ.get(ASSETS_ENV)
    if named:
        if has_binaries(Path(named)):
            return Path(named)
        raise FileNotFoundError(f"{ASSETS_ENV}={named} does not hold executable {wanted}")
    store = envtest_store()
    found = sorted((d for d in store.glob("*") if d.is_dir() and has_binaries(d)), key=_version_key)
    if found:
        return found[-1]
    raise FileNotFoundError(
        f"no control-plane binaries: {ASSETS_ENV} is unset and no folder under {store} "
        f"holds executable {wanted}"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pki(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A throwaway CA, a serving cert for 127.0.0.1 signed by it, and a service-account key.

    Returns (ca.crt, serving.crt, serving.key, service-account.key).
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spotwise-envtest-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # Service-account tokens are signed with RS256 by default, so this key is RSA.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = (
        folder / "ca.crt",
        folder / "serving.crt",
        folder / "serving.key",
        folder / "service-account.key",
    )
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(serving_key))
    paths[3].write_bytes(_pem_key(sa_key))
    return paths


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(kubeconfig))


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


class StartupError(RuntimeError):
    """A control-plane process exited or never became ready; the message has its log tail."""


class _Process:
    """One server process whose stdout and stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise StartupError(
                f"{self.name} exited with code {code}; last lines of {self.log}:\n"
                + log_tail(self.log)
            )

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _readyz(server: str, ca_file: Path, token: str) -> bool:
    request = urllib.request.Request(
        f"{server}/readyz", headers={"Authorization": f"Bearer {token}"}
    )
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _etcd_argv(etcd: Path, data_dir: Path, client_url: str, peer_url: str) -> list[str]:
    return [
        str(etcd),
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}",
        # Test data is thrown away; envtest skips fsync for the same reason.
        "--unsafe-no-fsync=true",
    ]


def _apiserver_argv(
    apiserver: Path, workdir: Path, etcd_url: str, port: int, pki: tuple[Path, Path, Path, Path]
) -> list[str]:
    _ca, serving_crt, serving_key, sa_key = pki
    return [
        str(apiserver),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        # Where the API server writes its own loopback-client cert.
        f"--cert-dir={workdir}",
        f"--tls-cert-file={serving_crt}",
        f"--tls-private-key-file={serving_key}",
        f"--token-auth-file={workdir / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={sa_key}",
        f"--service-account-signing-key-file={sa_key}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        # No controller-manager creates default service accounts, so pods would be refused.
        "--disable-admission-plugins=ServiceAccount",
    ]


def _wait_ready(
    server: str, ca_file: Path, token: str, processes: list[_Process], apiserver_log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for process in processes:
            process.check_alive()
        if _readyz(server, ca_file, token):
            return
        time.sleep(0.25)
    raise StartupError(
        f"kube-apiserver not ready at {server}/readyz after {START_TIMEOUT_S:.0f}s; "
        f"last lines of {apiserver_log}:\n{log_tail(apiserver_log)}"
    )


def start_control_plane(assets: Path, workdir: Path) -> tuple[ControlPlane, list[_Process]]:
    """Start etcd and kube-apiserver in `workdir`; the caller stops the returned processes."""
    pki = write_pki(workdir)
    token = secrets.token_urlsafe(24)
    (workdir / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    etcd_url = f"http://127.0.0.1:{free_port()}"
    peer_url = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    server = f"https://127.0.0.1:{port}"
    processes: list[_Process] = []
    try:
        processes.append(
            _Process(
                "etcd",
                _etcd_argv(assets / "etcd", workdir / "etcd-data", etcd_url, peer_url),
                workdir / "etcd.log",
            )
        )
        apiserver_log = workdir / "kube-apiserver.log"
        processes.append(
            _Process(
                "kube-apiserver",
                _apiserver_argv(assets / "kube-apiserver", workdir, etcd_url, port, pki),
                apiserver_log,
            )
        )
        _wait_ready(server, pki[0], token, processes, apiserver_log)
    except BaseException:
        stop_all(processes)
        raise
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, server, pki[0], token)
    return ControlPlane(server, kubeconfig, pki[0], token, assets), processes


def stop_all(processes: list[_Process]) -> None:
    """Stop in reverse start order: the API server before the etcd it writes to."""
    for process in reversed(processes):
        process.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the whole session, or a skip that says where it looked."""
    try:
        assets = find_assets()
    except FileNotFoundError as absent:
        print(f"control plane: {absent}")
        pytest.skip(str(absent))
    with tempfile.TemporaryDirectory(prefix="spotwise-envtest-") as tmp:
        plane, processes = start_control_plane(assets, Path(tmp))
        try:
            yield plane
        finally:
            stop_all(processes)


def crd_condition(crd: Any, kind: str) -> Any | None:
    for condition in (crd.status.conditions if crd.status else None) or []:
        if condition.type == kind:
            return condition
    return None


def apply_crd(api: client.ApiClient, manifest: dict[str, Any]) -> None:
    """Create or replace a CRD and wait until it is Established.

    A CRD the API server refuses raises AssertionError with the server's message.
    """
    extensions = client.ApiextensionsV1Api(api)
    name = manifest["metadata"]["name"]
    try:
        try:
            current = extensions.read_custom_resource_definition(name)
        except ApiException as missing:
            if missing.status != 404:
                raise
            extensions.create_custom_resource_definition(manifest)
        else:
            replacement = dict(manifest)
            replacement["metadata"] = {
                **manifest["metadata"],
                "resourceVersion": current.metadata.resource_version,
            }
            extensions.replace_custom_resource_definition(name, replacement)
    except ApiException as refused:
        raise AssertionError(f"API server refused CRD {name}: {api_message(refused)}") from None
    deadline = time.monotonic() + ESTABLISH_TIMEOUT_S
    crd = extensions.read_custom_resource_definition(name)
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition(name)
        established = crd_condition(crd, "Established")
        if established is not None and established.status == "True":
            return
        time.sleep(0.1)
    names_accepted = crd_condition(crd, "NamesAccepted")
    raise AssertionError(
        f"CRD {name} not Established after {ESTABLISH_TIMEOUT_S:.0f}s; "
        f"NamesAccepted: {names_accepted.message if names_accepted else 'unknown'}"
    )


def api_message(error: ApiException) -> str:
    """The Status message of an API error, or its raw body."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{error.status} {error.reason}: {error.body}"


@pytest.fixture(scope="session")
def scalingpolicy_crd(control_plane: ControlPlane) -> dict[str, Any]:
    """The repo's ScalingPolicy CRD, applied and Established; returns the manifest."""
    manifest: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    with control_plane.api_client() as api:
        apply_crd(api, manifest)
    return manifest
