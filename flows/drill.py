"""The guide's "test restore procedures regularly": a disaster recovery on a throwaway instance.

Provision → restore → integrity check, then always tear down (also on failure), reporting the RTO
it measured: how long a real recovery of this backup would take to reach a verified instance. A
failed drill fails its run and still publishes its report, naming the step that failed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flows.instance_recovery import (
    Attempt,
    failed,
    publish_report,
    recover_instance,
    recovery_result,
    targets_report,
    tear_down,
)
from flows.parameters import BackupRef, Instance, Kind, RepoUrl, SourceName, Targets
from flows.runbook import runbook
from qilbee_backup import recovery
from qilbee_backup.repository import open_repository
from tasks.steps import get_logger


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
        publish_report("restore-drill-report", "Restore drill", result, f"drill of {repo}: FAILED at {result['failed_step']}",
                       source_name)
        raise
    result = recovery_result(attempt, targets, rto)
    result["instance"] = {"provider": instance.provider, "url": recovered.instance.url, "torn_down": True}
    result["warnings"] = targets_report(result)
    for warning in result["warnings"]:
        logger.warning(warning)
    publish_report("restore-drill-report", "Restore drill", result, f"drill of {repo}", source_name)
    return result
