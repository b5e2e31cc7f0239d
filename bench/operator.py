#!/usr/bin/env python3
"""The operator under load: N ScalingPolicies at a 60 s interval; JSON on stdout.

For each size (default 50, then 200) this starts `spotwise run -n bench --standalone` as a
subprocess against a real kube-apiserver and a real Prometheus, creates N Deployments and
N policies (genetic engine, the built-in catalog, the kwok provider, the `generic` metrics
profile), waits until every policy has a plan, then measures for `--minutes`:

- decisions per minute (the operator's own `spotwise_decisions_total`, by outcome) and
  engine solves per minute (outcome `solved`: the plan was solved anew);
- the p50 and p95 of decision seconds (`spotwise_decision_seconds`, every decision, kept
  plans included: interpolated within the histogram's buckets, as `histogram_quantile`);
- CPU seconds per minute of the operator and its solver workers (/proc, utime + stime)
  and the average number of cores that is;
- peak RSS of the operator's process tree (VmRSS summed over the tree, sampled each
  second) and each process's high-water mark (VmHWM).

Target: 200 policies under 1 core on average and under 512 MiB RSS.

The control plane is the envtest one the integration tests use (etcd + kube-apiserver
found as `tests/integration/controlplane.py` finds them), or `--kubeconfig` for a running
cluster; Prometheus is Debian's, serving traffic backfilled with promtool from half an
hour ago to two hours ahead (each workload its own rate, a slow wave on it). Nothing runs
pods: the API server stores what the operator writes. Usage:

    python bench/operator.py [--sizes 50,200] [--minutes 5] > docs/results/operator.json

Each workload's capacity (15 rps per request in flight, contention 0.3, coherency 0.05)
makes its replicas follow its traffic, from 2 at the trough of the quietest to about 16
at the crest of the busiest, so plans are re-solved as the wave moves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from controlplane import (  # noqa: E402
    CRD_FILE,
    apply_crd,
    find_assets,
    free_port,
    start_control_plane,
    stop_all,
)
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from promserver import PROMETHEUS, PROMTOOL, PrometheusFactory  # noqa: E402

NAMESPACE = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- traffic --------------------------------------------------------------------------------


def rate(i: int, t: float) -> float:
    """Requests/second of workload i at time t: 20 to 110 rps, with a 20-minute wave."""
    base = 20.0 + 10.0 * (i % 10)
    return base * (1.0 + 0.25 * math.sin(2 * math.pi * t / 1200.0 + i))


def openmetrics(workloads: int, start: int, end: int, step: int = 15) -> str:
    lines = ["# TYPE http_server_request_duration_seconds histogram"]
    times = range(start, end + 1, step)
    for i in range(workloads):
        labels = f'namespace="{NAMESPACE}",pod="w-{i}-6d4cf56db6-x7k2p"'
        counts, total = [], 0.0
        for t in times:
            counts.append((t, total))
            total += rate(i, t) * step
        for le, share in (("0.1", 0.97), ("+Inf", 1.0)):
            lines += [
                f'http_server_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                f"{n * share:.3f} {t}"
                for t, n in counts
            ]
        lines += [
            f"http_server_request_duration_seconds_sum{{{labels}}} {n * 0.04:.3f} {t}"
            for t, n in counts
        ]
        lines += [
            f"http_server_request_duration_seconds_count{{{labels}}} {n:.3f} {t}" for t, n in counts
        ]
    return "\n".join([*lines, "# EOF"]) + "\n"


# -- objects --------------------------------------------------------------------------------


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "pause:3.9"}]},
            },
        },
    }


def policy(name: str, prometheus: str, interval: int) -> dict[str, Any]:
    """Like policies/web.yaml: one Deployment, genetic engine, 7 instance types."""
    return {
        "apiVersion": "spotwise.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "intervalSeconds": interval,
            "prometheus": {"url": prometheus, "timeoutSeconds": 5},
            "workloads": [
                {
                    "name": name,
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "slo": {"latencyP95Ms": 200},
                    "replicas": {"min": 2, "max": 40},
                    "concurrency": {"min": 1, "max": 64},
                    "metrics": {"profile": "generic"},
                    # A replica serves at most about 10 rps within the SLO: replicas follow
                    # the wave (a roomier replica would serve every rate with the minimum 2).
                    "capacity": {"serviceRateRps": 15, "contention": 0.3, "coherency": 0.05},
                    "resources": {"cpu": "500m", "memory": "512Mi"},
                }
            ],
            "nodes": {
                "provider": "kwok",
                "catalog": {
                    "builtin": "aws-us-east-1",
                    "instanceTypes": [
                        "m6i.large",
                        "m6i.xlarge",
                        "m7i.large",
                        "c6i.xlarge",
                        "m5.large",
                        "c5.xlarge",
                        "m6a.large",
                    ],
                },
                "onDemand": {"minShare": 0.2, "minNodes": 1},
                "spot": {"maxShare": 0.8, "maxPoolShare": 0.5},
                "survivePoolLoss": True,
            },
            "objective": {"maxHourlyCost": 10, "headroom": 0.2},
            "optimizer": {"engine": "genetic"},
        },
    }


# -- measuring a process tree ----------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from `state` on


def tree(root: int) -> list[int]:
    """`root` and every descendant."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def cpu_seconds(root: int) -> float:
    """CPU seconds of the tree: live processes' own time plus what reaped children left in
    their parents (cutime/cstime)."""
    total = 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields:
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class RssSampler:
    root: int
    peak_kib: int = 0
    hwm_kib: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(1.0):
            pids = tree(self.root)
            self.peak_kib = max(self.peak_kib, sum(status_kib(p, "VmRSS") for p in pids))
            for p in pids:
                self.hwm_kib[p] = max(self.hwm_kib.get(p, 0), status_kib(p, "VmHWM"))

    @contextmanager
    def sampling(self) -> Iterator[RssSampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


# -- the operator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    decisions: dict[str, float]  # spotwise_decisions_total by outcome, over policies
    buckets: dict[float, float]  # spotwise_decision_seconds_bucket by `le`, over policies


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    decisions: dict[str, float] = {}
    for m in re.finditer(
        r'^spotwise_decisions_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$', text, re.M
    ):
        decisions[m[1]] = decisions.get(m[1], 0.0) + float(m[2])
    buckets: dict[float, float] = {}
    for m in re.finditer(
        r'^spotwise_decision_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$', text, re.M
    ):
        le = float(m[1])
        buckets[le] = buckets.get(le, 0.0) + float(m[2])
    return Scrape(decisions, buckets)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts, interpolated linearly within the bucket
    it falls in (as Prometheus' `histogram_quantile`); None without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if math.isinf(le):
                return lower  # above the last finite bound: that bound is all we know
            return lower + (le - lower) * (rank - below) / (buckets[le] - below)
        lower, below = le, buckets[le]
    return lower


def planned(custom: client.CustomObjectsApi) -> int:
    items = custom.list_namespaced_custom_object(
        "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies"
    )["items"]
    return sum(1 for p in items if (p.get("status") or {}).get("plan"))


def run_size(
    api: client.ApiClient,
    kubeconfig: Path,
    prometheus: str,
    size: int,
    interval: int,
    minutes: float,
    workdir: Path,
) -> dict[str, Any]:
    apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
    for i in range(size):
        with suppress(ApiException):  # kept from a smaller run
            apps.create_namespaced_deployment(NAMESPACE, deployment(f"w-{i}"))
    metrics_port = free_port()
    log_file = workdir / f"operator-{size}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_file.open("wb") as out:
        operator = subprocess.Popen(
            [sys.executable, "-m", "spotwise", "run", "--standalone", "-n", NAMESPACE,
             "--kubeconfig", str(kubeconfig), "--metrics-port", str(metrics_port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with suppress(OSError):
                scrape(url)
                break
            time.sleep(0.5)
        sampler = RssSampler(operator.pid)
        with sampler.sampling():
            started, cpu_start = time.monotonic(), cpu_seconds(operator.pid)
            for i in range(size):
                custom.create_namespaced_custom_object(
                    "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies",
                    policy(f"w-{i}", prometheus, interval),
                )  # fmt: skip
            while planned(custom) < size:
                if operator.poll() is not None or time.monotonic() - started > 30 * 60:
                    raise RuntimeError(f"not every policy got a plan; see {log_file}")
                time.sleep(2)
            warmup = time.monotonic() - started
            warmup_cpu = cpu_seconds(operator.pid) - cpu_start
            log(f"{size} policies planned in {warmup:.0f}s; measuring {minutes:g} min")
            first, cpu0, t0 = scrape(url), cpu_seconds(operator.pid), time.monotonic()
            time.sleep(minutes * 60)
            last, cpu1, t1 = scrape(url), cpu_seconds(operator.pid), time.monotonic()
        seconds = t1 - t0
        decided = {k: v - first.decisions.get(k, 0.0) for k, v in last.decisions.items()}
        window = {le: n - first.buckets.get(le, 0.0) for le, n in last.buckets.items()}
        cpu = cpu1 - cpu0
        p50, p95 = quantile(0.5, window), quantile(0.95, window)
        result = {
            "policies": size,
            "intervalSeconds": interval,
            "warmupSeconds": round(warmup, 1),  # creating the policies until all have a plan
            "warmupCpuSeconds": round(warmup_cpu, 1),
            "measuredSeconds": round(seconds, 1),
            "decisionsPerMinute": round(sum(decided.values()) * 60 / seconds, 1),
            "decisionsByOutcome": {k: int(v) for k, v in sorted(decided.items())},
            "solvesPerMinute": round(decided.get("solved", 0.0) * 60 / seconds, 1),
            "decisionSecondsP50": None if p50 is None else round(p50, 4),
            "decisionSecondsP95": None if p95 is None else round(p95, 4),
            "cpuSecondsPerMinute": round(cpu * 60 / seconds, 2),
            "averageCores": round(cpu / seconds, 3),
            "peakRssMiB": round(sampler.peak_kib / 1024, 1),
            "processHighWaterMiB": sorted(
                (round(v / 1024, 1) for v in sampler.hwm_kib.values()), reverse=True
            ),
        }
        # Delete while the operator runs, so it removes its finalizers.
        for i in range(size):
            custom.delete_namespaced_custom_object(
                "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies", f"w-{i}"
            )
        deadline = time.monotonic() + 300
        while (
            time.monotonic() < deadline
            and custom.list_namespaced_custom_object(
                "spotwise.dev", "v1alpha1", NAMESPACE, "scalingpolicies"
            )["items"]
        ):
            time.sleep(2)
        return result
    finally:
        operator.send_signal(signal.SIGINT)
        try:
            operator.wait(timeout=60)
        except subprocess.TimeoutExpired:
            operator.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200", help="policy counts, comma-separated")
    parser.add_argument("--interval", type=int, default=60, help="intervalSeconds (60)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=5.0,
        help="measured minutes per size (5: a quarter of the traffic wave)",
    )
    parser.add_argument("--kubeconfig", type=Path, help="a running cluster instead of envtest")
    parser.add_argument("--crd", type=Path, default=CRD_FILE, help="CRD manifest to apply")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if PROMETHEUS is None or PROMTOOL is None:
        print(json.dumps({"skipped": "prometheus and promtool are needed"}))
        return 0
    with tempfile.TemporaryDirectory(prefix="spotwise-bench-") as tmp:
        workdir = Path(tmp)
        processes: list[Any] = []
        try:
            if args.kubeconfig is None:
                try:
                    assets = find_assets()
                except FileNotFoundError as absent:
                    print(json.dumps({"skipped": str(absent)}))
                    return 0
                (workdir / "cp").mkdir()
                plane, processes = start_control_plane(assets, workdir / "cp")
                kubeconfig, where = plane.kubeconfig, f"envtest {assets.name}"
            else:
                kubeconfig, where = args.kubeconfig, str(args.kubeconfig)
            api = config.new_client_from_config(config_file=str(kubeconfig))
            apply_crd(api, yaml.safe_load(args.crd.read_text()))
            with suppress(ApiException):
                client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
            factory = PrometheusFactory(workdir / "prometheus", PROMETHEUS, PROMTOOL)
            (workdir / "prometheus").mkdir()
            now = int(time.time())
            log(f"backfilling traffic for {max(sizes)} workloads")
            blocks = factory.blocks("bench", openmetrics(max(sizes), now - 1800, now + 7200))
            prometheus = factory.start(blocks, name="bench")
            runs = []
            try:
                for size in sizes:
                    runs.append(
                        run_size(api, kubeconfig, prometheus.url, size, args.interval,
                                 args.minutes, workdir)
                    )  # fmt: skip
            finally:
                factory.close()
        finally:
            stop_all(processes)
    result = {
        "benchmark": "operator",
        "controlPlane": where,
        "prometheus": "Debian prometheus, backfilled",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": runs,
        "targets": {
            f"{r['policies']} policies": {
                "averageCoresBelow1": r["averageCores"] < 1.0,
                "peakRssBelow512MiB": r["peakRssMiB"] < 512,
            }
            for r in runs
        },
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
