"""The operator's view: `status` (if the database died now, how fast and from what would we recover?)
and the metrics `serve --metrics-address` exports. Read only: the CLI never makes a flow run of
status (as with list); a scheduled deployment of it publishes the report as artifacts, optionally
writes the node_exporter textfile, and fails its run when a source is at risk, so the failure
automations alert.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flows.parameters import ListenAddress, PromFile, Repos, Seconds, SourceName, Targets, listen_address
from flows.runbook import runbook
from qilbee_backup import readiness
from qilbee_backup.errors import FailedWithReport, UsageError
from tasks.steps import current, emit_event, get_logger, publish_markdown, publish_rows

def statuses(repos: list[str], targets: Targets, source_name: str | None = None, *, raise_usage: bool = True) -> list[dict]:
    """Each repository's status; one that cannot be read is reported so, with why, not raised."""
    logger = get_logger()
    found = []
    for url in repos:
        try:
            found.append(readiness.check_repository(url, rpo_target_s=targets.rpo_s, rto_target_s=targets.rto_s,
                                                    source_name=source_name, raise_usage=raise_usage))
        except Exception as exc:  # noqa: BLE001 - a store's own exception: report it, keep the others
            if raise_usage and isinstance(exc, UsageError):
                raise
            logger.error("%s: cannot read the repository: %s", url, exc)
            found.append(readiness.unreadable(url, " ".join(str(exc).split()) or type(exc).__name__, targets.rpo_s,
                                              targets.rto_s))
    return found


@runbook
def status(repos: Repos, source_name: SourceName | None = None, targets: Targets = Targets(),
           textfile: PromFile | None = None) -> dict:
    """If the database died now, how fast and from what would we recover? Per source database: the
    newest backup and its age against the RPO target, the newest point a drill proved restorable (and
    its RTO against the RTO target), the last drill and verify, the repository's size and dedup ratio;
    a verdict, ready or at risk, with every reason. Reads only the listing, the manifests and the drill
    and verify records: no blob is downloaded. The run fails when a source is at risk.

    Args:
        repos: The repositories to report on, each a path, file:///path or s3://bucket/prefix.
        source_name: Only this source database (its name, as `list` shows it).
        targets: The recovery objectives a source is judged against (the guide: RTO 1 h, RPO 24 h).
        textfile: Also write the metrics to this file for node_exporter's textfile collector (a .prom file).
    """
    logger = get_logger()
    found = statuses(repos, targets, source_name)
    result: dict[str, Any] = {"ok": all(r["verdict"] == readiness.READY for r in found),
                              "checked_at": datetime.now(timezone.utc).isoformat(),
                              "rpo_target_s": targets.rpo_s, "rto_target_s": targets.rto_s, "repositories": found}
    if textfile:
        from qilbee_backup.metrics import write_textfile

        write_textfile(textfile, found)
        logger.info("metrics written to %s", textfile)
    from qilbee_backup.readiness_report import headline, status_markdown, status_rows

    verdict = headline(result)
    publish_markdown("backup-status", status_markdown(result), verdict[:500])
    publish_rows("backup-status-sources", status_rows(result), verdict[:500])
    # In a flow run the log is where an operator looks first; run directly, the printed report says it all.
    log = current().recorded
    for repo in found:
        for source in repo["sources"]:
            for warning in source["warnings"] if log else ():
                logger.warning("%s: %s", source["source"], warning)
            if source["verdict"] != readiness.READY:
                if log:
                    logger.error("%s is at risk: %s", source["source"], "; ".join(source["reasons"]))
                emit_event(event="qilbee.readiness.at-risk",
                           resource={"prefect.resource.id": f"qilbee.source.{source['source']}"},
                           payload={"repository": repo["url"], "reasons": source["reasons"]})
        if log and not repo["sources"] and repo["verdict"] != readiness.READY:
            logger.error("%s: %s", repo["url"], "; ".join(repo["reasons"]))
    if not result["ok"]:
        raise FailedWithReport(verdict, result)
    return result


def metrics_exporter(address: ListenAddress, repos: Repos, targets: Targets = Targets(), cache_s: Seconds = 60.0) -> Any:
    """Serve the status of the repositories as Prometheus metrics on address (a background thread),
    read again at most every cache_s seconds; (server, thread). Its signature is what `serve`'s
    metrics flags are checked against before anything starts."""
    from qilbee_backup.metrics import serve_metrics

    def compute() -> list[dict]:
        # A scrape must not die of one bad repository, nor of a missing passphrase: each is reported
        # down (qilbee_backup_repository_up 0), and why is in this process's log.
        found = statuses(repos, targets, raise_usage=False)
        for repo in found:
            if not repo["readable"]:
                get_logger().warning("metrics: %s cannot be read: %s", repo["url"], repo["error"])
        return found

    return serve_metrics(*listen_address(address), compute, cache_s)
