"""`qilbee-backup serve`: every deployment of prefect.yaml, with its schedule, served from this process.

The embedded default for a single machine: no work pool or worker, just this process (Prefect's
`serve`), which starts each scheduled run as it falls due. prefect.yaml stays the one place the
jobs, their parameters and schedules are written down.

With metrics (`--metrics-address`), the same process also answers Prometheus scrapes with the
backup status of the repositories its deployments use (flows/status.py), from a background thread.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml
from prefect import serve
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Interval

from qilbee_backup.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def load_deployments(config: Path, only: list[str] | None = None) -> list[dict]:
    try:
        spec = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"cannot read {config}: {e}") from None
    deployments = spec.get("deployments") or []
    names = [d["name"] for d in deployments]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise UsageError(f"no deployment named {', '.join(unknown)} in {config}; it has {', '.join(names)}")
    return [d for d in deployments if not only or d["name"] in only]


def _schedules(spec: dict) -> list:
    out = []
    for s in spec.get("schedules") or []:
        if "cron" in s:
            out.append(Cron(s["cron"], timezone=s.get("timezone")))
        elif "interval" in s:
            out.append(Interval(timedelta(seconds=float(s["interval"])), timezone=s.get("timezone")))
        else:
            raise UsageError(f"deployment {spec['name']}: a schedule needs cron or interval")
    return out


def deployment_repos(deployments: list[dict]) -> list[str]:
    """The repositories the deployments name (their `repo` and `repos` parameters), each once."""
    found: list[str] = []
    for spec in deployments:
        parameters = spec.get("parameters") or {}
        named = parameters.get("repos") or []
        for url in ([parameters["repo"]] if parameters.get("repo") else []) + list(named if isinstance(named, list) else [named]):
            if isinstance(url, str) and url not in found:
                found.append(url)
    return found


def serve_all(config: Path, only: list[str] | None = None, metrics: dict | None = None) -> None:
    """metrics: the exporter's parameters (flows.status.metrics_exporter's, already checked), or None."""
    if metrics is not None:
        import logging

        from flows.status import metrics_exporter

        metrics_exporter(**metrics)
        logging.getLogger("qilbee_backup.run").info("Prometheus metrics at http://%s/metrics (repositories: %s)",
                                                    metrics["address"], ", ".join(metrics["repos"]))
    runners = []
    for spec in load_deployments(config, only):
        flow = load_flow_from_entrypoint(str(ROOT / spec["entrypoint"]))
        runners.append(flow.to_deployment(
            name=spec["name"], schedules=_schedules(spec), parameters=spec.get("parameters") or {},
            description=spec.get("description"), tags=spec.get("tags")))
    serve(*runners)
