"""Basic auth and a custom CA, both read from Secrets, against a real Prometheus that
serves TLS with a test CA and checks passwords (its `--web.config.file`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from promserver import END, NAMESPACE, Server

from spotwise.api.loading import parse_spec
from spotwise.observe import Metrics, connect, read_metrics

pytestmark = pytest.mark.integration


def secrets_of(values: dict[tuple[str, str], str]) -> Callable[[str, str], str | None]:
    return lambda name, key: values.get((name, key))


def read(
    server: Server,
    prometheus: dict[str, object],
    secrets: dict[tuple[str, str], str],
    ca_dir: Path,
) -> Metrics:
    spec = parse_spec(
        {
            "prometheus": {"url": server.url, **prometheus},
            "workloads": [
                {
                    "name": "cart",
                    "targetRef": {"kind": "Deployment", "name": "cart"},
                    "slo": {"latencyP95Ms": 300},
                    "metrics": {"profile": "istio"},
                }
            ],
        }
    )
    assert spec.prometheus is not None
    client = connect(
        spec.prometheus, secrets=secrets_of(secrets), namespace=NAMESPACE, ca_dir=ca_dir
    )
    return read_metrics(
        spec, client, namespace=NAMESPACE, now=END, lookback_seconds=600, step_seconds=60
    )


AUTH = {"authSecretRef": {"name": "prom-auth", "usernameKey": "user", "passwordKey": "pass"}}
CA = {"caSecretRef": {"name": "prom-ca"}}


def good_secrets(server: Server) -> dict[tuple[str, str], str]:
    ((user, password),) = server.users.items()
    assert server.ca_pem is not None
    return {
        ("prom-auth", "user"): user,
        ("prom-auth", "pass"): password + "\n",  # as `kubectl create secret --from-file` keeps it
        ("prom-ca", "ca.crt"): server.ca_pem,
    }


def test_basic_auth_and_custom_ca(secure_prometheus: Server, tmp_path: Path) -> None:
    metrics = read(secure_prometheus, {**AUTH, **CA}, good_secrets(secure_prometheus), tmp_path)
    assert metrics.available, metrics.message
    assert metrics.workloads[0].request_rates[-1] == pytest.approx(6.0)


def test_wrong_password_is_refused(secure_prometheus: Server, tmp_path: Path) -> None:
    secrets = {**good_secrets(secure_prometheus), ("prom-auth", "pass"): "wrong"}
    metrics = read(secure_prometheus, {**AUTH, **CA}, secrets, tmp_path)
    assert not metrics.available
    assert f"{secure_prometheus.url} refused the credentials (HTTP 401)" in metrics.message


def test_without_the_ca_the_certificate_is_not_trusted(
    secure_prometheus: Server, tmp_path: Path
) -> None:
    metrics = read(secure_prometheus, AUTH, good_secrets(secure_prometheus), tmp_path)
    assert not metrics.available
    assert f"TLS error with {secure_prometheus.url}: certificate verify failed" in metrics.message


def test_missing_secret_key_is_a_reason_not_a_crash(
    secure_prometheus: Server, tmp_path: Path
) -> None:
    secrets = good_secrets(secure_prometheus)
    del secrets[("prom-auth", "pass")]
    metrics = read(secure_prometheus, {**AUTH, **CA}, secrets, tmp_path)
    assert not metrics.available
    assert f"Secret {NAMESPACE}/prom-auth has no key 'pass'" in metrics.message
