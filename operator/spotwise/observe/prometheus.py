"""Read a policy's workload metrics from Prometheus, without ever failing a tick.

`connect` builds the client (prometheus-api-client) from `spec.prometheus`: the timeout,
a bearer token or basic auth from a Secret, a custom CA from a Secret. `read_metrics`
runs each workload's queries (`profiles.py`) over a lookback window and turns the answers
into numbers. Whatever goes wrong — server down, slower than the timeout, refused
credentials, an error answer, NaN, no series, a newest point older than `stale_seconds`
— comes back as `Metrics(available=False)` with a one-line message naming the workload
and the query, so the decision holds its last plan instead of scaling down on bad data.

Not here: deciding what to do without metrics (`decide`), cluster state (`cluster.py`).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect

from spotwise.api.v1alpha1 import PrometheusSpec, ScalingPolicySpec
from spotwise.observe.profiles import DEFAULT_WINDOW, ProfileError, Queries, queries_for

DEFAULT_STALE_SECONDS = 180.0  # a newest point older than this is stale
MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
_SHOWN_QUERY_CHARS = 160

SecretReader = Callable[[str, str], str | None]  # (Secret name, key) -> decoded value


class MetricsError(Exception):
    """A query that gave no usable answer. `fatal`: the server cannot be used at all this
    tick (unreachable, too slow, credentials refused), so the remaining queries are
    skipped instead of each waiting for the timeout."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


class MetricsClient(Protocol):
    """What `read_metrics` needs from a Prometheus client. Both methods return the
    `data.result` list of the HTTP API's answer (matrix or vector) and raise
    `MetricsError` when there is none."""

    def query_range(
        self, query: str, *, start: float, end: float, step: float
    ) -> Sequence[Mapping[str, Any]]: ...

    def query(self, query: str, *, at: float) -> Sequence[Mapping[str, Any]]: ...


# -- the real client -----------------------------------------------------------------------


class PrometheusClient:
    """`MetricsClient` over `PrometheusConnect`. Made by `connect`; a client whose
    credentials could not be read (`problem`) fails every query with the reason."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        ca_file: Path | None = None,
        problem: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.ca_file = ca_file
        self.problem = problem
        session = requests.Session()
        if ca_file is not None:
            session.verify = str(ca_file)
        options: dict[str, Any] = {}
        if auth is not None:
            options["auth"] = auth
        self._prometheus = PrometheusConnect(
            url=self.url,
            headers=dict(headers or {}),
            session=session,
            timeout=timeout_seconds,  # type: ignore[arg-type]  # annotated int, used as float
            # No retries inside a tick: the next tick is the retry, and a retried timeout
            # would make one query take several timeouts. (requests' own default.)
            retry=urllib3.Retry(0, read=False),
            **options,
        )

    def query_range(
        self, query: str, *, start: float, end: float, step: float
    ) -> Sequence[Mapping[str, Any]]:
        return self._call(
            lambda: self._prometheus.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(start, UTC),
                end_time=datetime.fromtimestamp(end, UTC),
                step=f"{step:g}",
                params={"timeout": f"{self.timeout_seconds:g}"},  # the server stops too
            )
        )

    def query(self, query: str, *, at: float) -> Sequence[Mapping[str, Any]]:
        return self._call(
            lambda: self._prometheus.custom_query(
                query, params={"time": f"{at:.3f}", "timeout": f"{self.timeout_seconds:g}"}
            )
        )

    def close(self) -> None:
        """Close the connection pool (a client not closed is closed when collected)."""
        self._prometheus.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, run: Callable[[], Any]) -> Sequence[Mapping[str, Any]]:
        if self.problem is not None:
            raise MetricsError(self.problem, fatal=True)
        try:
            result = run()
        except requests.exceptions.SSLError as err:
            raise MetricsError(f"TLS error with {self.url}: {_cause(err)}", fatal=True) from err
        except requests.Timeout as err:
            raise MetricsError(
                f"no answer from {self.url} within {self.timeout_seconds:g}s", fatal=True
            ) from err
        except requests.ConnectionError as err:
            raise MetricsError(f"cannot connect to {self.url}: {_cause(err)}", fatal=True) from err
        except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
            raise MetricsError(f"request to {self.url} failed: {_cause(err)}", fatal=True) from err
        except PrometheusApiClientException as err:
            raise _http_error(self.url, str(err)) from err
        except (ValueError, KeyError, TypeError) as err:  # not the HTTP API's JSON
            raise MetricsError(f"unexpected answer from {self.url}: {err}") from err
        if not isinstance(result, list):
            raise MetricsError(f"unexpected answer from {self.url}: result is not a list")
        return result


def _cause(err: BaseException) -> str:
    text = str(err)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip()
    ssl = re.search(r"\[SSL: [A-Z_]+\] ([^'\")\]]+)", text)
    if ssl:
        return ssl.group(1).strip()
    return type(err).__name__


def _http_error(url: str, text: str) -> MetricsError:
    # PrometheusConnect reports "HTTP Status Code 400 (b'{...\"error\":\"...\"}')".
    status = re.search(r"HTTP Status Code (\d+)", text)
    code = int(status.group(1)) if status else 0
    detail = re.search(r'"error":"((?:[^"\\]|\\.)*)"', text)
    why = detail.group(1).replace('\\"', '"') if detail else f"HTTP {code}"
    if code in (401, 403):
        return MetricsError(f"{url} refused the credentials (HTTP {code})", fatal=True)
    return MetricsError(f"HTTP {code} from {url}: {why}")


def connect(
    spec: PrometheusSpec,
    *,
    secrets: SecretReader | None = None,
    namespace: str,
    ca_dir: Path | None = None,
) -> PrometheusClient:
    """A client for `spec`. `secrets(name, key)` returns a decoded value from a Secret in
    `namespace`, or None when the Secret or key is missing. Never raises for missing
    credentials: the client then fails each query with the reason. The CA bundle is
    written once per content to `ca_dir` (default: a folder under the temp dir)."""
    headers: dict[str, str] = {}
    auth: tuple[str, str] | None = None
    ca_file: Path | None = None
    try:
        if spec.auth_secret_ref is not None:
            ref = spec.auth_secret_ref
            if ref.token_key is not None:
                token = _secret(secrets, namespace, ref.name, ref.token_key).strip()
                headers["Authorization"] = f"Bearer {token}"
            elif ref.username_key is not None and ref.password_key is not None:
                user = _secret(secrets, namespace, ref.name, ref.username_key).strip()
                password = _secret(secrets, namespace, ref.name, ref.password_key)
                auth = (user, password.rstrip("\r\n"))  # `kubectl --from-file` keeps the newline
        if spec.ca_secret_ref is not None:
            ref_ca = spec.ca_secret_ref
            pem = _secret(secrets, namespace, ref_ca.name, ref_ca.key)
            if "-----BEGIN CERTIFICATE-----" not in pem:
                raise MetricsError(
                    f"Secret {namespace}/{ref_ca.name} key {ref_ca.key!r} holds no PEM certificate",
                    fatal=True,
                )
            ca_file = write_ca_bundle(pem, ca_dir)
    except MetricsError as err:
        return PrometheusClient(spec.url, timeout_seconds=spec.timeout_seconds, problem=err.reason)
    return PrometheusClient(
        spec.url,
        timeout_seconds=spec.timeout_seconds,
        headers=headers,
        auth=auth,
        ca_file=ca_file,
    )


def _secret(read: SecretReader | None, namespace: str, name: str, key: str) -> str:
    where = f"Secret {namespace}/{name}"
    if read is None:
        raise MetricsError(f"{where} is needed but no Secret reader was given", fatal=True)
    try:
        value = read(name, key)
    except Exception as err:  # the caller's reader: its failure is a reason, not a crash
        raise MetricsError(f"cannot read {where}: {err}", fatal=True) from err
    if value is None:
        raise MetricsError(f"{where} has no key {key!r}", fatal=True)
    return value


def write_ca_bundle(pem: str, directory: Path | None = None) -> Path:
    """The path of a file holding `pem`, named by its hash so every tick reuses it."""
    directory = directory or Path(tempfile.gettempdir()) / "spotwise-ca"
    path = directory / f"{hashlib.sha256(pem.encode()).hexdigest()[:32]}.pem"
    if path.exists():
        return path
    partial: str | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=directory, suffix=".partial")
        with os.fdopen(fd, "w") as out:
            out.write(pem)
        os.replace(partial, path)  # atomic: a concurrent reader never sees half a file
    except OSError as err:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        raise MetricsError(f"cannot write the CA bundle to {directory}: {err}", fatal=True) from err
    return path


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadMetrics:
    """One workload over the lookback window. Rates are requests/second summed over its
    series, oldest first, one per query step (steps where a series is NaN left out)."""

    name: str
    request_rates: tuple[float, ...]
    latency_p95_ms: float | None  # newest value; None when unknown (e.g. no requests)
    in_flight: float | None  # newest value, summed over the workload's series
    # (in flight, requests/second) of single pods at the same instant, to fit a replica's
    # capacity: pairs of rate and in-flight series with the same (non-empty) labels.
    per_replica: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Metrics:
    workloads: tuple[WorkloadMetrics, ...]
    available: bool
    message: str  # what failed (one line); notes on optional queries when available

    @classmethod
    def unavailable(cls, message: str) -> Metrics:
        return cls(workloads=(), available=False, message=message)


Labels = tuple[tuple[str, str], ...]
Points = tuple[tuple[float, float], ...]  # (unix seconds, value), NaN kept


@dataclass(frozen=True)
class Series:
    """One series of an answer: its labels, sorted, and its points."""

    labels: Labels
    points: Points


def parse_result(result: Sequence[Mapping[str, Any]]) -> tuple[Series, ...]:
    """Series of a matrix (`values`) or vector (`value`) result; values as floats, with
    Prometheus' "NaN", "+Inf" and "-Inf" as float NaN and infinities. Raises MetricsError
    for anything else."""
    out: list[Series] = []
    try:
        for item in result:
            raw = item["values"] if "values" in item else [item["value"]]
            labels = tuple(sorted((str(k), str(v)) for k, v in dict(item["metric"]).items()))
            out.append(Series(labels, tuple((float(t), float(v)) for t, v in raw)))
    except (KeyError, TypeError, ValueError) as err:
        raise MetricsError(f"unexpected series in the answer: {err!r}") from err
    return tuple(out)


def totals(series: Iterable[Series]) -> Points:
    """The sum over series at each instant, oldest first. An instant where some series is
    NaN or infinite is dropped: the sum of the others would understate the total."""
    summed: dict[float, float] = {}
    bad: set[float] = set()
    for s in series:
        for t, v in s.points:
            if math.isfinite(v):
                summed[t] = summed.get(t, 0.0) + v
            else:
                bad.add(t)
    return tuple(sorted((t, v) for t, v in summed.items() if t not in bad))


def _newest_max(series: Iterable[Series]) -> tuple[float, float] | None:
    # A quantile cannot be summed: with several series, the worst at the newest instant.
    best: dict[float, float] = {}
    for s in series:
        for t, v in s.points:
            if math.isfinite(v):
                best[t] = max(best.get(t, -math.inf), v)
    if not best:
        return None
    t = max(best)
    return t, best[t]


def _pairs(rates: Sequence[Series], in_flight: Sequence[Series]) -> tuple[tuple[float, float], ...]:
    by_labels = {s.labels: dict(s.points) for s in in_flight if s.labels}
    pairs: list[tuple[float, float]] = []
    for s in rates:
        other = by_labels.get(s.labels)
        if other is None:
            continue
        for t, rate in s.points:
            c = other.get(t, math.nan)
            if math.isfinite(rate) and math.isfinite(c):
                pairs.append((c, rate))
    return tuple(pairs)


def _shown(query: str) -> str:
    one_line = " ".join(query.split())
    if len(one_line) > _SHOWN_QUERY_CHARS:
        return one_line[: _SHOWN_QUERY_CHARS - 1] + "…"
    return one_line


def read_metrics(
    spec: ScalingPolicySpec,
    client: MetricsClient,
    *,
    namespace: str,
    now: float,
    lookback_seconds: float,
    step_seconds: float,
    stale_seconds: float = DEFAULT_STALE_SECONDS,
    window: str = DEFAULT_WINDOW,
) -> Metrics:
    """Every workload's request rates over [now - lookback, now], newest p95 latency and
    in-flight requests. Never raises for anything the server or the data does.

    `available` is False when a workload's request rate cannot be read: an error, no
    series, only NaN, or a newest point older than `stale_seconds`. Latency and in-flight
    are optional: when unreadable they are None and `message` says why. A fatal error
    (server unreachable, too slow, credentials refused) skips the remaining queries.
    """
    if lookback_seconds <= 0 or step_seconds <= 0 or stale_seconds <= 0:
        raise ValueError("lookback_seconds, step_seconds and stale_seconds must be positive")
    start = now - min(lookback_seconds, step_seconds * (MAX_POINTS - 1))

    def fetch(query: str) -> tuple[Series, ...]:
        try:
            return parse_result(client.query_range(query, start=start, end=now, step=step_seconds))
        except MetricsError:
            raise
        except Exception as err:  # a client from elsewhere must not crash the tick
            raise MetricsError(f"{type(err).__name__}: {err}", fatal=True) from err

    problems: list[str] = []
    notes: list[str] = []
    read: list[WorkloadMetrics] = []
    for ws in spec.workloads:
        try:
            queries = queries_for(ws, namespace, window=window)
            read.append(_measure(ws.name, queries, fetch, now, stale_seconds, notes))
        except ProfileError as err:
            problems.append(f"{ws.name}: {err}")
        except MetricsError as err:
            problems.append(err.reason)
            if err.fatal:
                break
    if problems:
        return Metrics(tuple(read), available=False, message="; ".join(problems))
    return Metrics(tuple(read), available=True, message="; ".join(notes))


def _measure(
    name: str,
    queries: Queries,
    fetch: Callable[[str], tuple[Series, ...]],
    now: float,
    stale_seconds: float,
    notes: list[str],
) -> WorkloadMetrics:
    """One workload; raises MetricsError (reason naming workload and query) when its
    request rate is unusable or the server fails, appends to `notes` for the rest."""

    def run(kind: str, query: str) -> tuple[Series, ...]:
        try:
            return fetch(query)
        except MetricsError as err:
            raise MetricsError(
                f"{name}: {kind}: {err.reason} (query: {_shown(query)})", fatal=err.fatal
            ) from err

    def age(points: Points) -> float:
        return now - points[-1][0]

    rate_series = run("request rate", queries.request_rate)
    rates = totals(rate_series)
    why = None
    if not any(s.points for s in rate_series):
        why = "no series (empty result)"
    elif not rates:
        why = "only NaN values"
    elif age(rates) > stale_seconds:
        why = f"stale: the newest point is {age(rates):.0f}s old (limit {stale_seconds:g}s)"
    if why is not None:
        raise MetricsError(f"{name}: request rate: {why} (query: {_shown(queries.request_rate)})")

    optional: dict[str, tuple[Series, ...]] = {}
    for kind, query in (("latency p95", queries.latency_p95), ("in flight", queries.in_flight)):
        try:
            optional[kind] = run(kind, query)
        except MetricsError as err:
            if err.fatal:
                raise
            optional[kind] = ()
            notes.append(err.reason)

    latency_ms: float | None = None
    newest = _newest_max(optional["latency p95"])
    if newest is None:
        notes.append(f"{name}: latency p95: no finite value (no requests?)")
    elif now - newest[0] > stale_seconds:
        notes.append(f"{name}: latency p95: stale ({now - newest[0]:.0f}s old)")
    else:
        latency_ms = newest[1] * 1000.0

    in_flight: float | None = None
    flight = totals(optional["in flight"])
    if not flight:
        notes.append(f"{name}: in flight: no finite value")
    elif age(flight) > stale_seconds:
        notes.append(f"{name}: in flight: stale ({age(flight):.0f}s old)")
    else:
        in_flight = flight[-1][1]

    return WorkloadMetrics(
        name=name,
        request_rates=tuple(v for _, v in rates),
        latency_p95_ms=latency_ms,
        in_flight=in_flight,
        per_replica=_pairs(rate_series, optional["in flight"]),
    )


__all__ = [
    "DEFAULT_STALE_SECONDS",
    "Metrics",
    "MetricsClient",
    "MetricsError",
    "PrometheusClient",
    "Series",
    "WorkloadMetrics",
    "connect",
    "parse_result",
    "read_metrics",
    "totals",
    "write_ca_bundle",
]
