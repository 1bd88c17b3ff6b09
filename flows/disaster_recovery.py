"""The guide's disaster recovery: provision → restore → verify data integrity → update DNS → resume.

Every step is timed; the result reports RTO (trigger to DNS switched) and RPO (age of the restored
backup at the trigger) against their targets. The input, and the DNS switch itself (its options, its
secret, its server), are checked before anything is provisioned. An integrity mismatch, a declined
approval or any failure stops the run before DNS is touched, tears the new instance down (unless
asked to keep it: then the error names it) and publishes the report, naming the step that failed.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from flows.instance_recovery import (
    Attempt,
    failed,
    publish_report,
    recover_instance,
    recovery_result,
    targets_report,
    tear_down,
)
from flows.parameters import (
    BackupRef,
    DnsSwitch,
    Instance,
    Kind,
    PathText,
    RepoUrl,
    Seconds,
    SourceName,
    Targets,
)
from flows.runbook import runbook
from qilbee_backup import recovery
from qilbee_backup.repository import open_repository
from qilbee_backup.errors import UsageError
from qilbee_backup.recovery_records import recovery_record
from qilbee_backup.report import figures_markdown, utc
from tasks import failback as failback_steps
from tasks import recovery as steps
from tasks.steps import get_logger, pause_for_input

KEY = "disaster-recovery-report"


class SwitchApproval(BaseModel):
    """Shown in the Prefect UI before the DNS switch: a decision, recorded in the report."""

    approve: bool = Field(False, description="Switch DNS to the new instance. Leave unticked to decline.")
    decided_by: str = Field("", max_length=200, description="Who decides (name or e-mail): recorded in the report.")
    note: str = Field("", max_length=2000, description="Why: recorded in the report.")


def _approval_text(recovered, switch, old: list[str] | None) -> str:
    manifest, integrity = recovered.choice.manifest, recovered.integrity
    return "\n".join([
        f"### Switch `{switch.record}` from {', '.join(old or []) or 'nothing'} to {switch.address}?",
        "",
        f"The new instance at {recovered.instance.url} serves backup `{manifest.backup_id}` "
        f"({manifest.source.series_name}, {manifest.kind}, taken {utc(manifest.created_at)}).",
        f"Integrity check: {'passed' if integrity and integrity.ok else 'FAILED'}.",
        "",
        figures_markdown(integrity.compared.get("figures") if integrity else None),
        "Tick **approve** to switch; leave it unticked to decline (the instance is then torn down).",
    ])


def _ask_approval(recovered, switch, old: list[str] | None, timeout_s: float) -> dict:
    asked = datetime.now(timezone.utc)
    answer = pause_for_input(_approval_text(recovered, switch, old), SwitchApproval, timeout_s)
    return {"approved": bool(answer.approve), "decided_by": answer.decided_by or "(not given)", "note": answer.note,
            "asked_at": asked.isoformat(), "decided_at": datetime.now(timezone.utc).isoformat()}


@runbook
def disaster_recovery(
    repo: RepoUrl,
    backup: BackupRef | None = None,
    kind: Kind | None = None,
    source_name: SourceName | None = None,
    instance: Instance = Instance(),
    data_root: PathText = "./qilbee-dr",
    dns: DnsSwitch | None = None,
    approve: bool = False,
    approval_timeout_s: Seconds = 3600.0,
    keep_failed_instance: bool = False,
    targets: Targets = Targets(),
) -> dict:
    """Bring QilbeeDB back from a backup on a new instance and point DNS at it.

    Args:
        repo: The repository to recover from: a path, file:///path or s3://bucket/prefix.
        backup: A backup id (restored or the run fails); empty or latest takes the newest intact backup: one that
            fails a quick verify or turns out damaged while restored is skipped, and named in the report.
        kind: Choose among this series only (daily, weekly, monthly, adhoc).
        source_name: Choose among this source database's backups only (its name, as `list` shows it).
        instance: Where the new instance runs: a process on this machine or a Docker container.
        data_root: The new instance's data directory is made under here.
        dns: The DNS switch: which provider, the record, the new address; empty leaves DNS alone.
        approve: Pause before the DNS switch until a person decides in the Prefect UI (default there: decline).
        approval_timeout_s: Seconds to wait for that decision; no decision declines.
        keep_failed_instance: Keep the new instance running when the recovery fails or is declined (to look at it);
            the error and the report name it. Default: tear it down.
        targets: The recovery objectives the run is measured against (the guide: RTO 1 h, RPO 24 h).
    """
    logger = get_logger()
    attempt = Attempt()
    clock = attempt.clock
    approval = None
    change = None
    try:
        repository = open_repository(repo)
        old = clock.run("check-dns", steps.check_dns, dns) if dns else None  # before anything is provisioned
        recovered = recover_instance(attempt, repository, backup, kind, source_name, instance, data_root)
        manifest = recovered.choice.manifest
        if not recovered.integrity.ok:
            raise recovery.RecoveryError(f"integrity check failed for backup {manifest.backup_id}; DNS not touched: "
                                         + "; ".join(recovered.integrity.differences))
        if dns:
            if approve:
                approval = clock.run("approval", _ask_approval, recovered, dns, old, approval_timeout_s)
                if not approval["approved"]:
                    clock.mark_failed()
                    raise recovery.RecoveryError(f"the DNS switch of {dns.record} was declined by {approval['decided_by']}"
                                                 + (f" ({approval['note']})" if approval["note"] else "") + "; DNS not touched")
            change = clock.run("dns-switch", steps.dns_switch, dns)
        rto = clock.elapsed()
        clock.run("resume", steps.resume, recovered.instance)
    except BaseException as exc:  # a cancelled or terminated run (a paused one too) tears down as well
        kept = _after_failure(attempt, keep_failed_instance)
        result = failed(recovery_result(attempt, targets, None), attempt, exc) | {"approval": approval, "instance": kept}
        if not isinstance(exc, UsageError):
            exc.result = result  # the CLI prints the report (with the decision) before the error line
        publish_report(KEY, "Disaster recovery", result, f"DR from {repo}: FAILED at {result['failed_step']}", source_name)
        if kept and kept.get("running"):
            error = recovery.RecoveryError(f"{result['error']} (the new instance was kept: {kept['url']}, "
                                           f"data in {kept['data_dir']})")
            error.result = result
            raise error from None
        raise

    result = recovery_result(attempt, targets, rto)
    inst = recovered.instance
    result["instance"] = {k: v for k, v in {"url": inst.url, "pid": inst.pid, "container": inst.container,
                                            "data_dir": str(inst.data_dir), "provider": inst.provider}.items() if v is not None}
    result["dns"] = {"record": change.record, "old": change.old, "new": change.new} if change else None
    result["approval"] = approval
    result["warnings"] = targets_report(result)
    result["recovery_id"] = _record_for_failback(repository, attempt, instance, dns, change, rto, result["warnings"])
    for warning in result["warnings"]:
        logger.warning(warning)
    publish_report(KEY, "Disaster recovery", result, f"DR from {repo}", source_name)
    return result


def _record_for_failback(repository, attempt: Attempt, instance: Instance, dns: DnsSwitch | None, change, rto: float,
                         warnings: list[str]) -> str | None:
    """Keep what a failback needs beside the backups (recoveries/<id>.json: the DNS record, its old value, the
    provider's settings, the instance); its id. Not kept is a warning: the recovery stands, and its report
    still names the record, the old value and the instance."""
    recovered = attempt.recovered
    settings = None
    if dns is not None:
        settings = dns.model_dump()
        if settings.get("hosts_file"):  # a failback may run from another directory
            settings["hosts_file"] = os.path.abspath(settings["hosts_file"])
    record = recovery_record(
        started_at=attempt.clock.trigger, manifest=recovered.choice.manifest, instance=recovered.instance.to_dict(),
        instance_settings=instance.model_dump(), dns_settings=settings, dns_change=change.to_dict() if change else None,
        figures=recovered.integrity.compared.get("figures") if recovered.integrity else None, rto_s=rto)
    try:
        return failback_steps.record_recovery(repository, record)
    except Exception as exc:  # noqa: BLE001 - advice for later: the recovery itself succeeded
        warnings.append(f"this recovery is not recorded in {repository.url} for a failback: {' '.join(str(exc).split())}")
        return None


def _after_failure(attempt: Attempt, keep: bool) -> dict | None:
    """Tear the new instance down, or keep it as asked; what became of it, for the report."""
    recovered = attempt.recovered
    if recovered is None or recovered.instance is None:
        return None
    inst = recovered.instance
    described = {"url": inst.url, "data_dir": str(recovered.data_dir), "provider": inst.provider,
                 **({"pid": inst.pid} if inst.pid else {}), **({"container": inst.container} if inst.container else {})}
    if keep:
        get_logger().warning("keeping the new instance at %s as asked (data in %s)", inst.url, recovered.data_dir)
        return described | {"running": True}
    return described | {"running": not tear_down(attempt)}
