"""The guide's "test restore procedures regularly": a disaster recovery on a throwaway instance.

Provision → restore → integrity check, then always tear down (also on failure), reporting the RTO
it measured: how long a real recovery of this backup would take to reach a verified instance. A
failed drill fails its run and still publishes its report, naming the step that failed.

Every drill, passed or failed, is recorded in the repository beside the backups (drills/, see
qilbee_backup.drill_history), so `status` and the metrics know the newest point proven restorable
even when the Prefect database is gone; the report shows the RTO over the last drills and warns
while it grows toward its target. Failing to record is a warning: the drill's verdict stands.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flows.instance_recovery import (
    Attempt,
    failed,
    recover_instance,
    recovery_result,
    targets_report,
    tear_down,
)
from flows.parameters import BackupRef, Instance, Kind, RepoUrl, SourceName, Targets
from flows.runbook import runbook
from qilbee_backup import drill_trend, recovery
from qilbee_backup.drill_history import drill_record
from qilbee_backup.report import artifact_key, recovery_markdown
from qilbee_backup.repository import open_repository
from tasks import history
from tasks.steps import get_logger, publish_markdown


@runbook
def drill(
    repo: RepoUrl,
    backup: BackupRef | None = None,
    kind: Kind | None = None,
    source_name: SourceName | None = None,
    instance: Instance = Instance(),
    targets: Targets = Targets(),
) -> dict:
    """Restore the newest good backup on a test instance, check it, tear it down, report the RTO.

    Args:
        repo: The repository to recover from: a path, file:///path or s3://bucket/prefix.
        backup: A backup id (restored or the drill fails); empty or latest takes the newest intact backup: one
            that fails a quick verify or turns out damaged while restored is skipped, and named in the report.
        kind: Choose among this series only (daily, weekly, monthly, adhoc).
        source_name: Choose among this source database's backups only (its name, as `list` shows it).
        instance: Where the test instance runs: a process on this machine or a Docker container.
        targets: The recovery objectives the drill is measured against (the guide: RTO 1 h, RPO 24 h).
    """
    logger = get_logger()
    attempt = Attempt()
    repository = None
    workdir = Path(tempfile.mkdtemp(prefix="qilbee-drill-"))
    try:
        try:
            repository = open_repository(repo)
            recovered = recover_instance(attempt, repository, backup, kind, source_name, instance, str(workdir))
            rto = attempt.clock.elapsed()
            if not recovered.integrity.ok:
                raise recovery.RecoveryError(f"drill of backup {recovered.choice.manifest.backup_id} failed its integrity "
                                             "check: " + "; ".join(recovered.integrity.differences))
        finally:
            tear_down(attempt)
            shutil.rmtree(workdir, ignore_errors=True)
    except Exception as exc:
        result = failed(recovery_result(attempt, targets, None), attempt, exc)
        _keep_in_history(repository, attempt, instance, targets, result, source_name)
        _publish(result, f"drill of {repo}: FAILED at {result['failed_step']}", source_name)
        raise
    result = recovery_result(attempt, targets, rto)
    result["instance"] = {"provider": instance.provider, "url": recovered.instance.url, "torn_down": True}
    result["warnings"] = targets_report(result)
    _keep_in_history(repository, attempt, instance, targets, result, source_name)
    for warning in result["warnings"]:
        logger.warning(warning)
    _publish(result, f"drill of {repo}", source_name)
    return result


def _keep_in_history(repository, attempt: Attempt, instance: Instance, targets: Targets, result: dict,
                     source_name: str | None) -> None:
    """Record the drill beside the backups and add the RTO trend to its result (result["trend"], its
    warnings to result["warnings"]). Never fails the drill: a drill that passed did pass, one that
    failed keeps its own error."""
    logger = get_logger()
    if repository is None:  # the drill's own error says why it could not be opened
        return
    choice = attempt.choice
    record = drill_record(result, started_at=attempt.clock.trigger, provider=instance.provider, source_name=source_name,
                          backup_created_at=choice.manifest.created_at if choice is not None else None)
    try:
        result["drill_id"], records = history.record_drill(repository, record)
    except Exception as exc:  # noqa: BLE001 - the record is advice; the drill's outcome is the verdict
        logger.warning("this drill is not recorded in %s: %s", repository.url, " ".join(str(exc).split()))
        return
    try:
        trend = drill_trend.rto_trend(records, targets.rto_s)
        logger.info("%s", drill_trend.text(trend))
    except Exception as exc:  # noqa: BLE001 - an odd record in the history must not turn a drill's verdict
        logger.warning("no RTO trend: the drill history of %s could not be read: %s", repository.url, exc)
        return
    result["trend"] = trend
    result["warnings"] = result.get("warnings", []) + trend["warnings"]


def _publish(result: dict, description: str, source_name: str | None) -> None:
    """The drill's report with the RTO trend under it: every outcome, one artifact history per source."""
    markdown = recovery_markdown("Restore drill", result)  # with the trend's summary and table
    if result.get("trend"):
        markdown += "\n" + drill_trend.chart_markdown(result["trend"])
    publish_markdown(artifact_key("restore-drill-report", result.get("source") or source_name), markdown, description)
