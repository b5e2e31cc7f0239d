"""A real Prometheus server on loopback, serving backfilled data, for integration tests.

The data is written here as OpenMetrics with timestamps (one hour, a 15 s scrape), in the
shapes the real exporters produce: the Knative queue-proxy (`revision_request_count`,
`revision_request_latencies` in ms), Istio's destination sidecar (`istio_requests_total`,
`istio_request_duration_milliseconds`, plus the client-side copies a query must skip),
and OpenTelemetry HTTP server histograms (`http_server_request_duration_seconds`). Beside
them: a workload without traffic, one whose scrapes stopped early, gauges with NaN.
`promtool tsdb create-blocks-from openmetrics` turns it into blocks and `prometheus`
(Debian's package, from PATH) serves them on a free loopback port.

What was written is kept in `TRUTH`, so tests compare what Prometheus answers with it.
Fixtures skip with the reason when prometheus or promtool is missing.

`DelayingProxy` is the one fake here: it forwards to the real server after a delay,
to test timeouts without depending on how fast a query runs.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

T0 = 1_700_000_000  # first sample, unix seconds (data is in the past: tests choose `now`)
SCRAPE = 15  # seconds between samples
END = T0 + 3600  # last sample
CHANGE = T0 + 1800  # the knative workload's traffic doubles here
NAMESPACE = "shop"
READY_TIMEOUT = 60.0  # seconds for a server to answer /-/ready


# -- what is written ------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """Requests of one pod: `rate(t)` per second, each taking one of `latencies` (in the
    exporter's unit) with the matching probability."""

    pod: str
    rate: Callable[[float], float]
    latencies: Sequence[tuple[float, float]]  # (latency, fraction); fractions sum to 1
    until: float = END  # last sample written

    def counts(self) -> list[tuple[int, float]]:
        """(scrape time, requests completed since T0) at every scrape: the integral of the
        piecewise-constant `rate`."""
        out, total = [], 0.0
        for t in _times(self.until):
            if t > T0:
                total += self.rate(t - SCRAPE) * SCRAPE
            out.append((t, total))
        return out

    def mean_latency(self) -> float:
        return sum(v * f for v, f in self.latencies)

    def cumulative(self, le: float) -> float:
        return sum(f for v, f in self.latencies if v <= le)


@dataclass(frozen=True)
class Truth:
    """What one workload's exporter reported, to compare answers with."""

    pods: Sequence[Traffic]
    buckets: Sequence[float]  # finite upper bounds, in the exporter's unit
    unit_seconds: float  # seconds per exporter unit (0.001 for ms)

    def rate(self, t: float) -> float:
        return sum(p.rate(t) for p in self.pods)

    def p95_ms(self) -> float:
        """The 95th percentile as Prometheus' histogram_quantile interpolates it from these
        buckets (all pods share one latency mix here)."""
        mix = self.pods[0]
        bounds = [*self.buckets, float("inf")]
        below, lower = 0.0, 0.0
        for le in bounds:
            cum = mix.cumulative(le)
            if cum >= 0.95:
                if le == float("inf"):
                    return lower * self.unit_seconds * 1000
                value = lower + (le - lower) * (0.95 - below) / (cum - below)
                return value * self.unit_seconds * 1000
            below, lower = cum, le
        raise AssertionError("unreachable")

    def in_flight(self, t: float) -> float:
        """Little's law: arrivals per second times mean seconds in the system."""
        return sum(p.rate(t) * p.mean_latency() * self.unit_seconds for p in self.pods)


KNATIVE_BUCKETS_MS = (5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600,
                      700, 800, 900, 1000, 2000, 5000, 10000, 20000, 50000, 100000)  # fmt: skip
ISTIO_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                    300000, 600000, 1800000, 3600000)  # fmt: skip
OTEL_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

_KNATIVE_MIX = ((30.0, 0.5), (70.0, 0.3), (180.0, 0.12), (420.0, 0.08))
_ISTIO_MIX = ((8.0, 0.6), (40.0, 0.3), (300.0, 0.1))
_OTEL_MIX = ((0.02, 0.7), (0.08, 0.24), (0.6, 0.06))


def _stepped(before: float, after: float) -> Callable[[float], float]:
    return lambda t: before if t < CHANGE else after


def _constant(value: float) -> Callable[[float], float]:
    return lambda t: value


TRUTH: dict[str, Truth] = {
    # Knative Service "checkout": two pods, traffic doubles at CHANGE.
    "checkout": Truth(
        pods=(
            Traffic("checkout-00001-deployment-5d4f8b7c9-abcde", _stepped(6.0, 12.0), _KNATIVE_MIX),
            Traffic("checkout-00001-deployment-5d4f8b7c9-fghij", _stepped(4.0, 8.0), _KNATIVE_MIX),
        ),
        buckets=KNATIVE_BUCKETS_MS,
        unit_seconds=0.001,
    ),
    # Deployment "cart" behind Istio sidecars.
    "cart": Truth(
        pods=(
            Traffic("cart-7d9f8b6c5-x2k4p", _constant(3.5), _ISTIO_MIX),
            Traffic("cart-7d9f8b6c5-q8r7t", _constant(2.5), _ISTIO_MIX),
        ),
        buckets=ISTIO_BUCKETS_MS,
        unit_seconds=0.001,
    ),
    # StatefulSet "search" with OpenTelemetry HTTP metrics.
    "search": Truth(
        pods=(
            Traffic("search-0", _constant(2.0), _OTEL_MIX),
            Traffic("search-1", _constant(2.0), _OTEL_MIX),
        ),
        buckets=OTEL_BUCKETS_S,
        unit_seconds=1.0,
    ),
    # Decoys a generic "search" query must not match: another workload, another namespace.
    "search-api": Truth(
        pods=(Traffic("search-api-6b8c9d7f5-k2m4n", _constant(50.0), _OTEL_MIX),),
        buckets=OTEL_BUCKETS_S,
        unit_seconds=1.0,
    ),
    # StatefulSet "idle": exported, but no requests at all.
    "idle": Truth(
        pods=(Traffic("idle-0", _constant(0.0), _OTEL_MIX),),
        buckets=OTEL_BUCKETS_S,
        unit_seconds=1.0,
    ),
    # StatefulSet "frozen": its scrapes stopped 40 minutes before END.
    "frozen": Truth(
        pods=(Traffic("frozen-0", _constant(5.0), _OTEL_MIX, until=T0 + 1200),),
        buckets=OTEL_BUCKETS_S,
        unit_seconds=1.0,
    ),
}
DECOY_NAMESPACE = "other"  # holds a "search-0" pod with 100 requests/second
FLAKY_VALUE = 7.0  # spotwise_test_requests_per_second{workload="flaky"}, NaN every 4th sample
FLAKY_NAN_EVERY = 4


def _times(until: float = END) -> range:
    return range(T0, int(until) + 1, SCRAPE)


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _histogram(
    lines: list[str], name: str, traffic: Traffic, buckets: Sequence[float], **labels: str
) -> None:
    """Bucket, sum and count series of one pod, each sample at every scrape."""
    counts = traffic.counts()
    for le in [*buckets, float("inf")]:
        tag = _labels(**labels, le="+Inf" if le == float("inf") else f"{le:g}")
        share = traffic.cumulative(le)
        lines.extend(f"{name}_bucket{tag} {n * share:.6f} {t}" for t, n in counts)
    tag = _labels(**labels)
    mean = traffic.mean_latency()
    lines.extend(f"{name}_sum{tag} {n * mean:.6f} {t}" for t, n in counts)
    lines.extend(f"{name}_count{tag} {n:.6f} {t}" for t, n in counts)


def openmetrics() -> str:
    """The whole data set as OpenMetrics text, ending in `# EOF`."""
    lines: list[str] = []

    # Knative queue-proxy. Its counter has no _total suffix (an OpenCensus exporter), which
    # OpenMetrics reserves for counters, so the family is declared `unknown`.
    lines.append("# TYPE revision_request_count unknown")
    knative = TRUTH["checkout"]
    for pod in knative.pods:
        for code, share in (("200", 0.9), ("503", 0.1)):  # the queries sum over codes
            tag = _labels(
                namespace_name=NAMESPACE,
                service_name="checkout",
                configuration_name="checkout",
                revision_name="checkout-00001",
                pod_name=pod.pod,
                container_name="queue-proxy",
                response_code=code,
                response_code_class=code[0] + "xx",
            )
            lines.extend(
                f"revision_request_count{tag} {n * share:.6f} {t}" for t, n in pod.counts()
            )
    lines.append("# TYPE revision_request_latencies histogram")
    for pod in knative.pods:
        _histogram(
            lines,
            "revision_request_latencies",
            pod,
            knative.buckets,
            namespace_name=NAMESPACE,
            service_name="checkout",
            revision_name="checkout-00001",
            pod_name=pod.pod,
        )

    # Istio: the destination sidecar reports each request, and so does the caller's.
    istio = TRUTH["cart"]
    lines.append("# TYPE istio_requests counter")
    for pod in istio.pods:
        for reporter, reporting_pod in (
            ("destination", pod.pod),
            ("source", "frontend-5c7d8-abcde"),
        ):
            tag = _labels(
                reporter=reporter,
                source_workload="frontend",
                source_workload_namespace=NAMESPACE,
                destination_workload="cart",
                destination_workload_namespace=NAMESPACE,
                destination_service_name="cart",
                response_code="200",
                pod=reporting_pod,
                destination_pod=pod.pod,
            )
            lines.extend(f"istio_requests_total{tag} {n:.6f} {t}" for t, n in pod.counts())
    lines.append("# TYPE istio_request_duration_milliseconds histogram")
    for pod in istio.pods:
        for reporter, reporting_pod in (
            ("destination", pod.pod),
            ("source", "frontend-5c7d8-abcde"),
        ):
            _histogram(
                lines,
                "istio_request_duration_milliseconds",
                pod,
                istio.buckets,
                reporter=reporter,
                destination_workload="cart",
                destination_workload_namespace=NAMESPACE,
                pod=reporting_pod,
                destination_pod=pod.pod,
            )

    # OpenTelemetry HTTP server histograms, seconds.
    lines.append("# TYPE http_server_request_duration_seconds histogram")
    for name in ("search", "search-api", "idle", "frozen"):
        truth = TRUTH[name]
        for pod in truth.pods:
            _histogram(
                lines,
                "http_server_request_duration_seconds",
                pod,
                truth.buckets,
                namespace=NAMESPACE,
                pod=pod.pod,
                http_request_method="GET",
                http_response_status_code="200",
            )
    decoy = Traffic("search-0", _constant(100.0), _OTEL_MIX)
    _histogram(
        lines,
        "http_server_request_duration_seconds",
        decoy,
        OTEL_BUCKETS_S,
        namespace=DECOY_NAMESPACE,
        pod="search-0",
        http_request_method="GET",
        http_response_status_code="200",
    )

    # Gauges for explicit queries: one NaN throughout, one NaN at every 4th sample.
    lines.append("# TYPE spotwise_test_requests_per_second gauge")
    tag = _labels(workload="broken")
    lines.extend(f"spotwise_test_requests_per_second{tag} NaN {t}" for t in _times())
    tag = _labels(workload="flaky")
    lines.extend(
        f"spotwise_test_requests_per_second{tag} "
        f"{'NaN' if i % FLAKY_NAN_EVERY == 0 else f'{FLAKY_VALUE:g}'} {t}"
        for i, t in enumerate(_times())
    )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running Prometheus."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    ca_pem: str | None = None  # TLS servers: the CA that signed their certificate
    users: dict[str, str] = field(default_factory=dict)  # basic-auth user -> password

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class PrometheusFactory:
    """Builds TSDB blocks with promtool and starts Prometheus servers on them; stops every
    server it started on `close`."""

    def __init__(self, root: Path, prometheus: str, promtool: str) -> None:
        self.root = root
        self.prometheus = prometheus
        self.promtool = promtool
        self.servers: list[Server] = []
        self._blocks: dict[str, Path] = {}

    def blocks(self, name: str, text: str) -> Path:
        """A folder of TSDB blocks holding `text` (OpenMetrics); built once per name."""
        if name not in self._blocks:
            source = self.root / f"{name}.om"
            source.write_text(text)
            out = self.root / f"{name}-blocks"
            done = subprocess.run(
                [
                    self.promtool,
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    "--quiet",
                    str(source),
                    str(out),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"promtool failed: {done.stderr.strip() or done.stdout}")
            self._blocks[name] = out
        return self._blocks[name]

    def start(
        self,
        blocks: Path,
        *,
        name: str,
        web_config: str | None = None,
        ca_pem: str | None = None,
        users: dict[str, str] | None = None,
    ) -> Server:
        """Prometheus on a copy of `blocks` (a TSDB folder has one owner), on a free
        loopback port; returns once /-/ready answers."""
        home = self.root / name
        home.mkdir()
        data = home / "data"
        shutil.copytree(blocks, data)
        config = home / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        port = free_port()
        args = [
            self.prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Retention counts back from the newest block, not from today: old data stays.
            "--storage.tsdb.retention.time=100y",
        ]
        scheme = "http"
        if web_config is not None:
            (home / "web.yml").write_text(web_config)
            args.append(f"--web.config.file={home / 'web.yml'}")
            scheme = "https"
        log = home / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=home)
        server = Server(f"{scheme}://127.0.0.1:{port}", process, log, ca_pem, users or {})
        self.servers.append(server)
        self._wait_ready(server, home)
        return server

    def _wait_ready(self, server: Server, home: Path) -> None:
        import ssl

        context = None
        if server.ca_pem is not None:
            context = ssl.create_default_context(cadata=server.ca_pem)
        headers = {}
        if server.users:
            import base64

            user, password = next(iter(server.users.items()))
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                break
            try:
                request = urllib.request.Request(f"{server.url}/-/ready", headers=headers)
                with urllib.request.urlopen(request, timeout=2, context=context) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        server.stop()
        tail = server.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"prometheus in {home} did not become ready:\n{tail}")

    def close(self) -> None:
        for server in self.servers:
            server.stop()


class DelayingProxy:
    """A FAKE in front of a real server: forwards each GET after `delay` seconds."""

    def __init__(self, upstream: str, delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self._stopping = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if proxy._stopping.wait(proxy.delay):
                    return
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as up:
                        body, status = up.read(), up.status
                except urllib.error.HTTPError as err:
                    body, status = err.read(), err.code
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up waiting: that is the point

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# -- TLS and basic auth ------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    ca_pem: str
    cert_pem: str
    key_pem: str


def self_signed_ca_and_server_cert() -> Credentials:
    """A CA and a certificate it signs for 127.0.0.1 (cryptography), valid for a day."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spotwise test CA")])
    ca = (
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
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Credentials(
        ca_pem=ca.public_bytes(pem).decode(),
        cert_pem=cert.public_bytes(pem).decode(),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash (what Prometheus' web config wants) from the C library, or None when
    this Python has no `crypt` module or the library lacks bcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
    try:
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    except (OSError, ValueError):
        return None
    return hashed if hashed and hashed.startswith("$2") else None


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusFactory]:
    """Starts real Prometheus servers; skips when prometheus or promtool is not installed."""
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip("prometheus and promtool are needed (Debian: apt-get install prometheus)")
    factory = PrometheusFactory(tmp_path_factory.mktemp("prometheus"), PROMETHEUS, PROMTOOL)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def prometheus(prometheus_factory: PrometheusFactory) -> Server:
    """A plain-HTTP Prometheus serving the data set in `TRUTH`."""
    blocks = prometheus_factory.blocks("dataset", openmetrics())
    return prometheus_factory.start(blocks, name="plain")


@pytest.fixture(scope="session")
def secure_prometheus(prometheus_factory: PrometheusFactory) -> Server:
    """The same data behind TLS (a test CA) and basic auth (user `spotwise`)."""
    password = "s3cret-pass"
    hashed = bcrypt_hash(password)
    if hashed is None:
        pytest.skip("no bcrypt in this Python's crypt module: cannot write a web config")
    try:
        creds = self_signed_ca_and_server_cert()
    except ImportError:
        pytest.skip("the cryptography package is needed to make a test CA")
    home = prometheus_factory.root / "tls"
    home.mkdir()
    (home / "server.crt").write_text(creds.cert_pem)
    (home / "server.key").write_text(creds.key_pem)
    web_config = (
        "tls_server_config:\n"
        f"  cert_file: {home / 'server.crt'}\n"
        f"  key_file: {home / 'server.key'}\n"
        "basic_auth_users:\n"
        f"  spotwise: '{hashed}'\n"
    )
    blocks = prometheus_factory.blocks("dataset", openmetrics())
    return prometheus_factory.start(
        blocks,
        name="secure",
        web_config=web_config,
        ca_pem=creds.ca_pem,
        users={"spotwise": password},
    )
