"""What a disaster recovery and a drill share: choose → provision → restore → start → check, timed.

When the chosen backup turns out damaged while it is restored (a blob that does not decode or hash
right, one gone missing), the next older intact backup is tried, and each one passed over is named
in the log and the report. A backup the operator named is restored or fails: no fallback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.events import emit_event

from qilbee_backup import recovery
from tasks import recovery as steps


class StepClock:
    """Times each step of the runbook, so the report shows where the recovery time went."""

    def __init__(self) -> None:
        self.trigger = recovery.utcnow()
        self._t0 = time.monotonic()
        self.steps: list[dict[str, Any]] = []

    def run(self, name: str, fn, *args, **kwargs):
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.steps.append({"name": name, "duration_s": round(time.monotonic() - start, 3)})

    def elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 3)


def provisioner_options(provider: str, server_cmd: str | None, image: str | None, network: str | None,
                        container_command: str | None, health_timeout: float) -> dict:
    if provider == "process":
        return {"server_cmd": server_cmd, "health_timeout": health_timeout}
    return {"image": image, "network": network, "command": container_command, "health_timeout": health_timeout}


@dataclass
class Restored:
    """A backup restored on disk, ready for an instance to start on."""

    choice: recovery.Choice
    provisioner: Any
    data_dir: Path
    result: Any  # restorer.RestoreResult


def restore_newest_intact(clock: StepClock, repository, backup: str | None, kind: str | None, source_name: str | None,
                          provider: str, options: dict, data_root: str) -> Restored:
    """Choose, provision and restore; on damage found by the restore, fall back to the next older
    backup (unless one was named). Each attempt's steps are timed under the same names."""
    logger = get_run_logger()
    damaged: list[dict] = []
    while True:
        choice = clock.run("choose-backup", steps.choose_backup, repository, backup, kind, source_name,
                           [d["backup_id"] for d in damaged])
        manifest = choice.manifest
        provisioner, data_dir = clock.run("provision", steps.provision, provider, options, data_root, manifest.backup_id)
        try:
            result = clock.run("restore", steps.restore, repository, manifest, data_dir)
        except Exception as exc:
            if choice.explicit or not recovery.is_damage(exc):
                raise
            logger.warning("backup %s is damaged (%s); trying the next older backup", manifest.backup_id, exc)
            damaged.append({"backup_id": manifest.backup_id, "problems": f"restore failed: {exc}"})
            continue
        choice.skipped = damaged + choice.skipped
        return Restored(choice, provisioner, data_dir, result)


def recovery_result(choice, clock: StepClock, rto: float, rto_target_s: float, rpo_target_s: float, integrity, restored) -> dict:
    """The figures a DR and a drill both report."""
    manifest = choice.manifest
    return {
        "backup_id": manifest.backup_id,
        "kind": manifest.kind,
        "skipped_backups": choice.skipped,
        "steps": clock.steps,
        "rto_s": rto,
        "rto_target_s": rto_target_s,
        "rpo_s": round(recovery.rpo_seconds(manifest, clock.trigger), 3),
        "rpo_target_s": rpo_target_s,
        "integrity": integrity.to_dict(),
        "restore": {"files": restored.files, "bytes": restored.bytes, "bytes_downloaded": restored.bytes_downloaded},
    }


def targets_report(result: dict) -> list[str]:
    """Warnings for missed targets, also sent as Prefect events an automation can act on."""
    missed = []
    for what in ("rto", "rpo"):
        value, target = result.get(f"{what}_s"), result.get(f"{what}_target_s")
        if value is not None and target is not None and value > target:
            missed.append(f"{what.upper()} {value:.0f} s missed its target of {target:.0f} s")
            emit_event(event=f"qilbee.recovery.{what}-missed",
                       resource={"prefect.resource.id": f"qilbee.backup.{result['backup_id']}"},
                       payload={"value_s": value, "target_s": target, "kind": result.get("kind")})
    return missed


