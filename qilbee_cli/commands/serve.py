"""serve: every deployment of prefect.yaml, each on its schedule, from this one process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "serve"
HELP = "serve every deployment of prefect.yaml with its schedule from this process"


METRICS_FLAGS = {"address": "--metrics-address", "repos": "--metrics-repo", "cache_s": "--metrics-cache",
                 "targets.rpo_s": "--rpo-target", "targets.rto_s": "--rto-target"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="the deployments file (default: the project's prefect.yaml)")
    p.add_argument("--only", action="append", metavar="NAME", help="serve only this deployment (repeatable)")
    p.add_argument("--metrics-address", metavar="HOST:PORT",
                   help="also serve Prometheus metrics of the backup status on HOST:PORT/metrics (e.g. 127.0.0.1:9108)")
    p.add_argument("--metrics-repo", action="append", metavar="URL",
                   help="a repository the metrics report on (repeatable; default: those the served deployments name)")
    p.add_argument("--metrics-cache", type=float, metavar="SECONDS",
                   help="read the repositories again at most this often (default 60); scrapes in between get the last figures")
    p.add_argument("--rpo-target", type=float, metavar="SECONDS", help="the metrics' RPO target (default 86400: 24 h)")
    p.add_argument("--rto-target", type=float, metavar="SECONDS", help="the metrics' RTO target (default 3600: 1 h)")


def run(given: dict[str, Any]) -> Any:
    from flows.serve import ROOT, serve_all

    config = Path(given["config"]) if "config" in given else ROOT / "prefect.yaml"
    serve_all(config, given.get("only"), _metrics(given, config))
    return None


def _metrics(given: dict[str, Any], config: Path) -> dict | None:
    """The metrics exporter's parameters from the flags, checked before anything starts; None without
    --metrics-address (then its other flags are a mistake, said in one line)."""
    from qilbee_backup.errors import UsageError

    if "metrics_address" not in given:
        stray = [f for f in ("metrics_repo", "metrics_cache", "rpo_target", "rto_target") if f in given]
        if stray:
            raise UsageError(f"--{stray[0].replace('_', '-')} needs --metrics-address")
        return None
    from flows.serve import deployment_repos, load_deployments
    from flows.status import metrics_exporter
    from qilbee_cli.common import validate

    repos = given.get("metrics_repo") or deployment_repos(load_deployments(config, given.get("only")))
    if not repos:
        raise UsageError("--metrics-address: no repository to report on: the deployments served name none; "
                         "give --metrics-repo URL")
    params: dict[str, Any] = {"address": given["metrics_address"], "repos": repos}
    if "metrics_cache" in given:
        params["cache_s"] = given["metrics_cache"]
    targets = {field: given[flag] for field, flag in (("rpo_s", "rpo_target"), ("rto_s", "rto_target")) if flag in given}
    if targets:
        params["targets"] = targets
    return validate(metrics_exporter, params, METRICS_FLAGS)
