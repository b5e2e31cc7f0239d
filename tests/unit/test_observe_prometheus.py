"""Parsing Prometheus answers, the failure rules of read_metrics, and how connect wires
credentials. The real server's behaviour is in tests/integration/test_prometheus_*.py;
here a scripted FakeClient stands in for it and a recording HTTP server for the wire."""

from __future__ import annotations

import base64
import http.server
import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from spotwise.api.loading import parse_spec
from spotwise.api.v1alpha1 import PrometheusSpec, ScalingPolicySpec
from spotwise.observe.prometheus import (
    MAX_POINTS,
    MetricsError,
    connect,
    parse_result,
    read_metrics,
    totals,
    write_ca_bundle,
)

NOW = 1_700_003_600.0
STEP = 60.0

CA_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUZmFrZS1ub3QtYS1yZWFsLWNlcnQwCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)


def spec(*names: str, **metrics: Any) -> ScalingPolicySpec:
    return parse_spec(
        {
            "workloads": [
                {
                    "name": n,
                    "targetRef": {"kind": "Deployment", "name": n},
                    "slo": {"latencyP95Ms": 200},
                    **({"metrics": metrics} if metrics else {}),
                }
                for n in names
            ]
        }
    )


def matrix(*series: tuple[dict[str, str], Sequence[tuple[float, str]]]) -> list[dict[str, Any]]:
    return [{"metric": m, "values": [[t, v] for t, v in points]} for m, points in series]


def grid(values: Sequence[str], end: float = NOW) -> list[tuple[float, str]]:
    """`values` at STEP intervals ending at `end`."""
    return [(end - STEP * (len(values) - 1 - i), v) for i, v in enumerate(values)]


class FakeClient:
    """A FAKE MetricsClient: answers by query kind (rate, latency, in flight), records calls."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple[str, float, float, float]] = []

    def query_range(
        self, query: str, *, start: float, end: float, step: float
    ) -> Sequence[Mapping[str, Any]]:
        self.calls.append((query, start, end, step))
        kind = (
            "latency"
            if "histogram_quantile" in query
            else "in_flight"
            if "_sum" in query
            else "rate"
        )
        answer = self.answers.get(kind, [])
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def query(self, query: str, *, at: float) -> Sequence[Mapping[str, Any]]:
        raise AssertionError("read_metrics uses range queries only")


def read(client: FakeClient, s: ScalingPolicySpec | None = None, **kw: Any) -> Any:
    return read_metrics(
        s or spec("api"),
        client,
        namespace="shop",
        now=NOW,
        lookback_seconds=kw.pop("lookback_seconds", 600.0),
        step_seconds=kw.pop("step_seconds", STEP),
        **kw,
    )


# -- parsing -------------------------------------------------------------------------------


def test_parse_matrix_and_vector_with_special_values() -> None:
    (m,) = parse_result(matrix(({"pod": "a"}, [(1.0, "1.5"), (2.0, "NaN"), (3.0, "+Inf")])))
    assert m.labels == (("pod", "a"),)
    assert m.points[0] == (1.0, 1.5)
    assert math.isnan(m.points[1][1]) and m.points[2][1] == math.inf
    (v,) = parse_result([{"metric": {}, "value": [5.0, "-Inf"]}])
    assert v.labels == () and v.points == ((5.0, -math.inf),)


@pytest.mark.parametrize(
    "bad",
    [
        [{"values": [[1, "1"]]}],  # no metric
        [{"metric": {}, "values": [[1, "x"]]}],  # not a number
        [{"metric": {}, "values": [1]}],  # not a pair
        [{"metric": {}}],  # neither values nor value
    ],
)
def test_parse_rejects_what_is_not_a_result(bad: list[dict[str, Any]]) -> None:
    with pytest.raises(MetricsError, match="unexpected series"):
        parse_result(bad)


def test_totals_sum_per_instant_and_drop_nan() -> None:
    series = parse_result(
        matrix(
            ({"pod": "a"}, [(1.0, "1"), (2.0, "NaN"), (3.0, "2"), (5.0, "NaN")]),
            ({"pod": "b"}, [(1.0, "3"), (2.0, "NaN"), (4.0, "+Inf"), (5.0, "6")]),
        )
    )
    # t=3: only a exists then; t=5: a is NaN, so b alone would understate the total.
    assert totals(series) == ((1.0, 4.0), (3.0, 2.0))


# -- read_metrics: good answers -------------------------------------------------------------


def test_rates_are_summed_over_pods_oldest_first() -> None:
    client = FakeClient(
        rate=matrix(
            ({"pod": "a"}, grid(["1", "2", "3"])), ({"pod": "b"}, grid(["10", "20", "30"]))
        ),
        latency=matrix(({}, grid(["0.2", "0.25"]))),
        in_flight=matrix(
            ({"pod": "a"}, grid(["0.1", "0.2", "0.3"])), ({"pod": "b"}, grid(["1", "2", "3"]))
        ),
    )
    m = read(client)
    assert m.available and m.message == ""
    (w,) = m.workloads
    assert w.request_rates == (11.0, 22.0, 33.0)
    assert w.latency_p95_ms == pytest.approx(250.0)
    assert w.in_flight == pytest.approx(3.3)
    assert sorted(w.per_replica) == sorted(
        [(0.1, 1.0), (0.2, 2.0), (0.3, 3.0), (1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]
    )


def test_partial_nan_is_dropped_not_propagated() -> None:
    client = FakeClient(rate=matrix(({}, grid(["1", "NaN", "3", "NaN", "5"]))))
    (w,) = read(client).workloads
    assert w.request_rates == (1.0, 3.0, 5.0)


def test_range_and_step_are_asked_for() -> None:
    client = FakeClient(rate=matrix(({}, grid(["1"]))))
    read(client, lookback_seconds=900.0, step_seconds=30.0)
    _, start, end, step = client.calls[0]
    assert (start, end, step) == (NOW - 900.0, NOW, 30.0)


def test_lookback_is_cut_to_what_prometheus_serves() -> None:
    client = FakeClient(rate=matrix(({}, grid(["1"]))))
    read(client, lookback_seconds=1e9, step_seconds=1.0)
    _, start, end, _ = client.calls[0]
    assert end - start == MAX_POINTS - 1


def test_several_series_of_a_quantile_give_the_worst() -> None:
    client = FakeClient(
        rate=matrix(({}, grid(["1"]))),
        latency=matrix(({"pod": "a"}, grid(["0.1", "0.3"])), ({"pod": "b"}, grid(["0.5", "0.2"]))),
    )
    assert read(client).workloads[0].latency_p95_ms == pytest.approx(300.0)


def test_aggregated_series_give_no_per_replica_samples() -> None:
    client = FakeClient(rate=matrix(({}, grid(["5"]))), in_flight=matrix(({}, grid(["1"]))))
    w = read(client).workloads[0]
    assert w.in_flight == 1.0 and w.per_replica == ()


# -- read_metrics: failures -----------------------------------------------------------------


def test_empty_result() -> None:
    m = read(FakeClient(rate=[]))
    assert not m.available
    assert m.message.startswith("api: request rate: no series (empty result) (query: sum by (pod)")


def test_only_nan() -> None:
    m = read(FakeClient(rate=matrix(({}, grid(["NaN", "NaN"])))))
    assert not m.available and "api: request rate: only NaN values" in m.message


@pytest.mark.parametrize(("stale_seconds", "available"), [(180.0, False), (400.0, True)])
def test_stale_is_a_parameter(stale_seconds: float, available: bool) -> None:
    client = FakeClient(rate=matrix(({}, grid(["1", "2"], end=NOW - 300))))
    m = read(client, stale_seconds=stale_seconds)
    assert m.available is available
    if not available:
        assert "api: request rate: stale: the newest point is 300s old (limit 180s)" in m.message


def test_fatal_error_skips_the_remaining_queries() -> None:
    client = FakeClient(rate=MetricsError("cannot connect to http://p: refused", fatal=True))
    m = read(client, spec("a", "b", "c"))
    assert not m.available
    assert m.message.startswith("a: request rate: cannot connect to http://p: refused (query: ")
    assert len(client.calls) == 1


def test_error_of_one_workload_does_not_hide_the_others() -> None:
    client = FakeClient(rate=MetricsError("HTTP 400 from http://p: parse error"))
    m = read(client, spec("a", "b"))
    assert not m.available
    assert m.message.count("HTTP 400") == 2 and m.message.startswith("a: ") and "; b: " in m.message


def test_optional_queries_failing_are_notes() -> None:
    client = FakeClient(
        rate=matrix(({}, grid(["1"]))),
        latency=MetricsError("HTTP 422 from http://p: execution error"),
        in_flight=matrix(({}, grid(["NaN"]))),
    )
    m = read(client)
    assert m.available
    w = m.workloads[0]
    assert w.request_rates == (1.0,) and w.latency_p95_ms is None and w.in_flight is None
    assert "api: latency p95: HTTP 422 from http://p: execution error (query: " in m.message
    assert "api: in flight: no finite value" in m.message


def test_optional_query_timing_out_is_fatal() -> None:
    client = FakeClient(
        rate=matrix(({}, grid(["1"]))),
        latency=MetricsError("no answer from http://p within 5s", fatal=True),
    )
    m = read(client, spec("a", "b"))
    assert not m.available
    assert m.message.startswith("a: latency p95: no answer from http://p within 5s")
    assert len(client.calls) == 2  # b was never asked


def test_a_client_that_raises_anything_does_not_crash_the_tick() -> None:
    m = read(FakeClient(rate=RuntimeError("boom")))
    assert not m.available and "api: request rate: RuntimeError: boom" in m.message


def test_bad_profile_settings_are_reported() -> None:
    m = read(FakeClient(), spec("api", labels={"bad-name": "x"}))
    assert not m.available
    assert m.message.startswith("api: metrics.labels: 'bad-name' is not a Prometheus label name")


def test_long_queries_are_shortened_to_one_line() -> None:
    query = "sum(\n  rate(x[1m])\n)" + " + 0" * 100
    m = read(FakeClient(rate=[]), spec("api", requestRate=query))
    assert "\n" not in m.message
    assert "(query: sum( rate(x[1m]) ) + 0 + 0" in m.message and m.message.endswith("…)")


def test_bad_arguments_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        read(FakeClient(), step_seconds=0.0)


# -- connect: credentials on the wire -------------------------------------------------------


class RecordingPrometheus:
    """A FAKE Prometheus HTTP API that answers every query with one sample and records
    each request's path, parameters and headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                fake.requests.append((url.path, parse_qs(url.query), dict(self.headers.items())))
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "matrix",
                            "result": [{"metric": {}, "values": [[NOW, "1"]]}],
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def recorder() -> Iterator[RecordingPrometheus]:
    server = RecordingPrometheus()
    yield server
    server.close()


def prom(url: str, **extra: Any) -> PrometheusSpec:
    return PrometheusSpec.model_validate({"url": url, "timeoutSeconds": 3, **extra})


def test_bearer_token_from_a_secret(recorder: RecordingPrometheus) -> None:
    seen: list[tuple[str, str]] = []

    def secrets(name: str, key: str) -> str | None:
        seen.append((name, key))
        return "t0ken\n"

    client = connect(
        prom(recorder.url, authSecretRef={"name": "prom", "tokenKey": "token"}),
        secrets=secrets,
        namespace="shop",
    )
    client.query_range("up", start=NOW - 60, end=NOW, step=15)
    path, params, headers = recorder.requests[0]
    assert seen == [("prom", "token")]
    assert path == "/api/v1/query_range"
    assert headers["Authorization"] == "Bearer t0ken"
    assert params["query"] == ["up"] and params["step"] == ["15"]
    assert params["start"] == [str(int(NOW - 60))] and params["end"] == [str(int(NOW))]
    assert params["timeout"] == ["3"]  # Prometheus stops the query when the client would


def test_basic_auth_from_a_secret(recorder: RecordingPrometheus) -> None:
    values = {"user": "alice", "pass": "pa:ss\n"}
    client = connect(
        prom(
            recorder.url,
            authSecretRef={"name": "prom", "usernameKey": "user", "passwordKey": "pass"},
        ),
        secrets=lambda name, key: values.get(key),
        namespace="shop",
    )
    client.query("up", at=NOW)
    path, params, headers = recorder.requests[0]
    assert path == "/api/v1/query" and params["time"] == [f"{NOW:.3f}"]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:pa:ss").decode()


def test_no_auth_sends_no_authorization(recorder: RecordingPrometheus) -> None:
    connect(prom(recorder.url), namespace="shop").query("up", at=NOW)
    assert "Authorization" not in recorder.requests[0][2]


@pytest.mark.parametrize(
    ("secrets", "reason"),
    [
        (None, "Secret shop/prom is needed but no Secret reader was given"),
        (lambda name, key: None, "Secret shop/prom has no key 'token'"),
        (lambda name, key: 1 / 0, "cannot read Secret shop/prom: division by zero"),
    ],
)
def test_unreadable_credentials_fail_queries_not_connect(
    recorder: RecordingPrometheus, secrets: Any, reason: str
) -> None:
    client = connect(
        prom(recorder.url, authSecretRef={"name": "prom", "tokenKey": "token"}),
        secrets=secrets,
        namespace="shop",
    )
    with pytest.raises(MetricsError) as caught:
        client.query("up", at=NOW)
    assert caught.value.reason == reason and caught.value.fatal
    assert recorder.requests == []  # nothing was sent without the credentials


def test_ca_bundle_from_a_secret_is_written_once(tmp_path: Path) -> None:
    spec_ = prom("https://prometheus.example:9090", caSecretRef={"name": "ca"})
    secrets = {("ca", "ca.crt"): CA_PEM}
    first = connect(
        spec_, secrets=lambda n, k: secrets.get((n, k)), namespace="shop", ca_dir=tmp_path
    )
    again = connect(
        spec_, secrets=lambda n, k: secrets.get((n, k)), namespace="shop", ca_dir=tmp_path
    )
    assert first.problem is None and first.ca_file is not None
    assert first.ca_file == again.ca_file and first.ca_file.read_text() == CA_PEM
    assert [p.name for p in tmp_path.iterdir()] == [first.ca_file.name]  # no partial files
    assert first._prometheus._session.verify == str(first.ca_file)


def test_ca_secret_without_a_certificate(tmp_path: Path) -> None:
    client = connect(
        prom("https://p:9090", caSecretRef={"name": "ca", "key": "bundle"}),
        secrets=lambda n, k: "not a pem",
        namespace="shop",
        ca_dir=tmp_path,
    )
    assert client.problem == "Secret shop/ca key 'bundle' holds no PEM certificate"


def test_write_ca_bundle_reports_an_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MetricsError, match="cannot write the CA bundle"):
        write_ca_bundle(CA_PEM, blocker / "sub")
