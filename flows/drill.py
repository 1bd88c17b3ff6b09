"""The guide's "test restore procedures regularly": a disaster recovery on a throwaway instance.

Provision → restore → integrity check, then always tear down (also on failure), reporting the RTO
it measured: how long a real recovery of this backup would take to reach a verified instance.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger

from flows.instance_recovery import StepClock, provisioner_options, recovery_result, restore_newest_intact, targets_report
from qilbee_backup import pipeline, recovery
from qilbee_backup.report import recovery_markdown
from tasks import recovery as steps
from tasks.artifacts import publish_markdown


@flow(name="restore-drill")
def drill(
    repo: str,
    provider: str = "process",
    backup: str | None = None,
    kind: str | None = None,
    source_name: str | None = None,
    server_cmd: str | None = None,
    image: str | None = "qilbeedb/qilbeedb:latest",
    network: str | None = "bridge",
    container_command: str | None = None,
    rto_target_s: float = 3600,
    rpo_target_s: float = 86400,
    health_timeout: float = 120.0,
) -> dict:
    """Restore the newest good backup on a test instance, check it, tear it down, report the RTO.

    Args:
        repo: The repository to recover from: a path, file:///path or s3://bucket/prefix.
        provider: Where the new instance runs: process (a server command on this machine) or docker.
        backup: A backup id (restored or the drill fails); empty takes the newest intact backup: one that fails a
            quick verify or turns out damaged while restored is skipped, and named in the report.
        kind: Choose among this series only (daily, weekly, monthly, adhoc).
        source_name: Choose among this source database's backups only (its name, as `list` shows it).
        server_cmd: process provider: the server command, with {data_dir}, {port} and {host}; empty runs
            the bundled emulator (give the real qilbeedb binary here).
        image: docker provider: the server image.
        network: docker provider: bridge (a published port) or host networking.
        container_command: docker provider: the container's arguments, with {port}, {host}, {data_dir}.
        rto_target_s: The recovery time objective in seconds (the guide: under 1 hour).
        rpo_target_s: The recovery point objective in seconds (the guide: under 24 hours).
        health_timeout: Seconds to wait for the new instance to answer /health.
    """
    logger = get_run_logger()
    clock = StepClock()
    workdir = Path(tempfile.mkdtemp(prefix="qilbee-drill-"))
    provisioner = instance = None
    try:
        repository = pipeline.open_repository(repo)
        recovered = restore_newest_intact(
            clock, repository, backup, kind, source_name, provider,
            provisioner_options(provider, server_cmd, image, network, container_command, health_timeout), str(workdir))
        choice, provisioner, data_dir, restored = recovered.choice, recovered.provisioner, recovered.data_dir, recovered.result
        manifest = choice.manifest
        instance = clock.run("start-instance", steps.start_instance, provisioner, data_dir, None, None)
        integrity = clock.run("integrity-check", steps.integrity_check, instance, manifest, restored.files)
        rto = clock.elapsed()
    finally:
        if instance is not None:
            clock.run("teardown", steps.teardown, provisioner, instance)
        shutil.rmtree(workdir, ignore_errors=True)
    result = recovery_result(choice, clock, rto, rto_target_s, rpo_target_s, integrity, restored)
    result["ok"] = integrity.ok
    result["instance"] = {"provider": provider, "url": instance.url, "torn_down": True}
    result["warnings"] = targets_report(result)
    for warning in result["warnings"]:
        logger.warning(warning)
    publish_markdown("restore-drill-report", recovery_markdown("Restore drill", result), f"drill of {repo}")
    if not integrity.ok:
        raise recovery.RecoveryError(f"drill of backup {manifest.backup_id} failed its integrity check: " + "; ".join(integrity.differences))
    return result
