"""Backup readiness as Prometheus metrics: the figures `status` computes, in the ecosystem's
conventions (base units, *_timestamp_seconds for times, a 0/1 gauge for an outcome, labels
repository / source / kind), so that alerting rules (deployments/prometheus/) need no knowledge of
this tool.

Two ways out, one set of metrics: a scrape endpoint (`serve --metrics-address`; the repositories are
read on a scrape, at most every `cache_s` seconds, since reading a repository costs a listing and
its manifests) and a node_exporter textfile (`status --textfile`, written atomically: the collector
never reads half a file). Times are exported as timestamps, so an alert computes an age with
time() and a textfile written an hour ago does not freeze it; the ages are exported too, for
dashboards.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import QilbeeBackupError

log = logging.getLogger(__name__)

REPO, SOURCE, SERIES, STEP = ("repository",), ("repository", "source"), ("repository", "source", "kind"), \
    ("repository", "source", "step")

# name -> (help, labels). Every metric is a gauge: each is a reading of the repository, not a count
# this process kept (a restarted exporter must not reset anything).
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "qilbee_backup_repository_up": ("1 when the repository could be read at the last check, 0 when not.", REPO),
    "qilbee_backup_status_timestamp_seconds": ("When these figures were read from the repository.", REPO),
    "qilbee_backup_repository_stored_bytes": ("Bytes stored under blobs/ (compressed, encrypted).", REPO),
    "qilbee_backup_repository_logical_bytes": ("Sum of every backup's size: what restoring each would write.", REPO),
    "qilbee_backup_repository_dedup_ratio": ("Logical bytes over unique content bytes.", REPO),
    "qilbee_backup_repository_damaged_manifests": ("Manifests that cannot be read or do not match their digest.", REPO),
    "qilbee_backup_rpo_target_seconds": ("The recovery point objective the verdict is judged against.", REPO),
    "qilbee_backup_rto_target_seconds": ("The recovery time objective the verdict is judged against.", REPO),
    "qilbee_backup_verify_last_timestamp_seconds": ("When the last recorded verify ran.", REPO),
    "qilbee_backup_verify_success": ("1 when the last recorded verify found every backup intact, else 0.", REPO),
    "qilbee_backup_last_success_timestamp_seconds": ("When the newest backup of the series was taken.", SERIES),
    "qilbee_backup_last_backup_size_bytes": ("Size of the newest backup of the series (what a restore writes).", SERIES),
    "qilbee_backup_last_backup_files": ("Files in the newest backup of the series.", SERIES),
    "qilbee_backup_backups": ("Backups in the series.", SERIES),
    "qilbee_backup_series_stored_bytes": ("Stored bytes of the blobs the series' backups reference.", SERIES),
    "qilbee_backup_missing_blobs": ("Blobs the series' backups name that the store does not hold.", SERIES),
    "qilbee_backup_recovery_point_timestamp_seconds": ("When the source's newest backup (any kind) was taken.", SOURCE),
    "qilbee_backup_recovery_point_age_seconds": ("Age of the source's newest backup: the data lost if it died now.", SOURCE),
    "qilbee_backup_ready": ("1 when the source is ready (backup within RPO, last drill passed within RTO), else 0.", SOURCE),
    "qilbee_backup_restore_drill_last_timestamp_seconds": ("When the source's last restore drill started.", SOURCE),
    "qilbee_backup_restore_drill_success": ("1 when the source's last restore drill passed, 0 when it failed.", SOURCE),
    "qilbee_backup_restore_drill_last_success_timestamp_seconds": ("When the last passing drill started.", SOURCE),
    "qilbee_backup_restore_drill_rto_seconds": ("RTO measured by the last passing drill: trigger to a checked instance.", SOURCE),
    "qilbee_backup_restore_drill_rto_target_seconds": ("The RTO target the last passing drill was measured against.", SOURCE),
    "qilbee_backup_verified_recovery_point_timestamp_seconds": (
        "When the backup the last passing drill restored was taken: the newest point proven restorable.", SOURCE),
    "qilbee_backup_restore_drill_step_duration_seconds": ("Duration of each step of the last passing drill.", STEP),
}


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def samples(statuses: Iterable[dict[str, Any]]) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """metric name -> [(label values, value)] from repository statuses (readiness.check_repository)."""
    out: dict[str, list[tuple[tuple[str, ...], float]]] = {name: [] for name in METRICS}

    def put(name: str, labels: tuple[str, ...], value: Any) -> None:
        if value is not None:
            out[name].append((labels, float(value)))

    for repo in statuses:
        r = (repo["url"],)
        put("qilbee_backup_repository_up", r, 1 if repo["readable"] else 0)
        put("qilbee_backup_status_timestamp_seconds", r, _ts(repo.get("checked_at")))
        put("qilbee_backup_rpo_target_seconds", r, repo["rpo_target_s"])
        put("qilbee_backup_rto_target_seconds", r, repo["rto_target_s"])
        if not repo["readable"]:
            continue
        put("qilbee_backup_repository_stored_bytes", r, repo["stored_bytes"])
        put("qilbee_backup_repository_logical_bytes", r, repo["logical_bytes"])
        put("qilbee_backup_repository_dedup_ratio", r, repo["dedup_ratio"])
        put("qilbee_backup_repository_damaged_manifests", r, len(repo["damaged_manifests"]))
        verify = repo.get("last_verify")
        if verify:
            put("qilbee_backup_verify_last_timestamp_seconds", r, _ts(verify.get("recorded_at")))
            put("qilbee_backup_verify_success", r, 1 if verify.get("ok") else 0)
        for source in repo["sources"]:
            s = (repo["url"], source["source"])
            for series in source["series"]:
                k = (*s, series["kind"])
                put("qilbee_backup_last_success_timestamp_seconds", k, _ts(series["newest_at"]))
                put("qilbee_backup_last_backup_size_bytes", k, series["bytes_total"])
                put("qilbee_backup_last_backup_files", k, series["files"])
                put("qilbee_backup_backups", k, series["backups"])
                put("qilbee_backup_series_stored_bytes", k, series["stored_bytes"])
                put("qilbee_backup_missing_blobs", k, series["missing_blobs"])
            point = source["recovery_point"]
            if point:
                put("qilbee_backup_recovery_point_timestamp_seconds", s, _ts(point["created_at"]))
                put("qilbee_backup_recovery_point_age_seconds", s, point["age_s"])
            put("qilbee_backup_ready", s, 1 if source["verdict"] == "ready" else 0)
            last, proven = source["last_drill"], source["verified_point"]
            if last:
                put("qilbee_backup_restore_drill_last_timestamp_seconds", s, _ts(last.get("started_at")))
                put("qilbee_backup_restore_drill_success", s, 1 if last.get("ok") else 0)
            if proven:
                put("qilbee_backup_restore_drill_last_success_timestamp_seconds", s, _ts(proven.get("started_at")))
                put("qilbee_backup_restore_drill_rto_seconds", s, proven.get("rto_s"))
                put("qilbee_backup_restore_drill_rto_target_seconds", s, proven.get("rto_target_s"))
                put("qilbee_backup_verified_recovery_point_timestamp_seconds", s, _ts(proven.get("backup_created_at")))
                for step in proven.get("steps") or []:
                    put("qilbee_backup_restore_drill_step_duration_seconds", (*s, step.get("name") or "?"),
                        step.get("duration_s"))
    return out


def families(statuses: Iterable[dict[str, Any]]) -> list[GaugeMetricFamily]:
    found = samples(statuses)
    made = []
    for name, (doc, labels) in METRICS.items():
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        for values, value in found[name]:
            family.add_metric(list(values), value)
        made.append(family)
    return made


class StatusCollector(Collector):
    """Metrics computed by `compute` (the statuses of every repository), reused for cache_s seconds:
    Prometheus may scrape every 15 s, and several Prometheus servers may scrape one exporter."""

    def __init__(self, compute: Callable[[], list[dict[str, Any]]], cache_s: float) -> None:
        self._compute, self._cache_s = compute, cache_s
        self._lock = threading.Lock()
        self._at: float | None = None
        self._statuses: list[dict[str, Any]] = []

    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:  # one reading at a time: a second scrape waits for the first's figures
            if self._at is None or time.monotonic() - self._at >= self._cache_s:
                self._statuses = self._compute()
                self._at = time.monotonic()
            return self._statuses

    def collect(self):
        yield from families(self.statuses())


class _Fixed(Collector):
    def __init__(self, statuses: list[dict[str, Any]]) -> None:
        self._statuses = statuses

    def collect(self):
        yield from families(self._statuses)


def write_textfile(path: str, statuses: list[dict[str, Any]]) -> None:
    """The metrics into a node_exporter textfile: written beside it, then renamed over it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(statuses))
    try:
        write_to_textfile(path, registry)
    except OSError as exc:
        raise QilbeeBackupError(f"cannot write the metrics to {path}: {exc.strerror or exc}") from None


def serve_metrics(host: str, port: int, compute: Callable[[], list[dict[str, Any]]], cache_s: float):
    """Serve /metrics on host:port from a background thread; (server, thread). One line when the
    address cannot be bound (in use, not this machine's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(compute, cache_s))
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise QilbeeBackupError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
