"""What a disaster recovery and a drill share: choose → provision → restore → start → check, timed,
and a report in every outcome.

When the chosen backup turns out damaged while it is restored (a blob that does not decode or hash
right, one gone missing), the next older intact backup is tried, and each one passed over is named
in the log and the report. A backup the operator named is restored or fails: no fallback.
A run that fails after it provisioned an instance tears it down, unless asked to keep it (then
the error and the report name it); either way the report says which step failed and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.parameters import Instance, Targets
from qilbee_backup import recovery
from qilbee_backup.errors import UsageError
from qilbee_backup.report import artifact_key, duration, recovery_markdown
from tasks import recovery as steps
from tasks.steps import emit_event, get_logger, publish_markdown


class StepClock:
    """Times each step of the runbook, so the report shows where the recovery time went, and which
    step failed."""

    def __init__(self) -> None:
        self.trigger = recovery.utcnow()
        self._t0 = time.monotonic()
        self.steps: list[dict[str, Any]] = []

    def run(self, name: str, fn, *args, **kwargs):
        start = time.monotonic()
        ok = False
        try:
            value = fn(*args, **kwargs)
            ok = True
            return value
        finally:
            self.steps.append({"name": name, "duration_s": round(time.monotonic() - start, 3), "ok": ok})

    def elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def failed_step(self) -> str | None:
        """The step that failed (a teardown failing while cleaning up after it does not count)."""
        failed = [s["name"] for s in self.steps if not s["ok"]]
        return next((n for n in reversed(failed) if n != "teardown"), failed[-1] if failed else None)

    def mark_failed(self) -> None:
        """The last step ran but its answer is a failure (an integrity mismatch, a declined approval)."""
        self.steps[-1]["ok"] = False


@dataclass
class Recovered:
    """A backup restored and served by a running, checked instance."""

    choice: recovery.Choice
    provisioner: Any
    data_dir: Path
    restored: Any  # restorer.RestoreResult
    instance: Any = None  # provision.Instance
    integrity: recovery.IntegrityReport | None = None


@dataclass
class Attempt:
    """What a recovery got to, for the report and the clean-up, whatever happened."""

    clock: StepClock = field(default_factory=StepClock)
    choice: recovery.Choice | None = None  # the backup being recovered, once chosen
    recovered: Recovered | None = None


def recover_instance(attempt: Attempt, repository, backup: str | None, kind: str | None, source_name: str | None,
                     instance: Instance, data_root: str, name: str | None = None) -> Recovered:
    """Choose, provision and restore (falling back past damage), start an instance, check its figures.
    attempt.recovered is set as soon as there is something to clean up."""
    logger = get_logger()
    clock = attempt.clock
    options = instance.provisioner_options()
    damaged: list[dict] = []
    while True:
        choice = clock.run("choose-backup", steps.choose_backup, repository, backup, kind, source_name,
                           [d["backup_id"] for d in damaged])
        manifest = choice.manifest
        attempt.choice = choice
        provisioner, data_dir = clock.run("provision", steps.provision, instance.provider, options, data_root,
                                          manifest.backup_id)
        try:
            restored = clock.run("restore", steps.restore, repository, manifest, data_dir)
        except Exception as exc:
            if choice.explicit or not recovery.is_damage(exc):
                raise
            logger.warning("backup %s is damaged (%s); trying the next older backup", manifest.backup_id, exc)
            damaged.append({"backup_id": manifest.backup_id, "problems": f"restore failed: {exc}"})
            continue
        break
    choice.skipped = damaged + choice.skipped
    recovered = attempt.recovered = Recovered(choice, provisioner, data_dir, restored)
    recovered.instance = clock.run("start-instance", steps.start_instance, provisioner, data_dir, instance.port, name)
    recovered.integrity = clock.run("integrity-check", steps.integrity_check, recovered.instance, manifest, restored.files)
    if not recovered.integrity.ok:
        clock.mark_failed()
    return recovered


def tear_down(attempt: Attempt) -> bool:
    """Stop the instance a recovery started (a failed or declined DR, every drill). A failure to stop
    it is logged and reported, never in place of the error that brought us here."""
    recovered = attempt.recovered
    if recovered is None or recovered.instance is None:
        return True
    try:
        attempt.clock.run("teardown", steps.teardown, recovered.provisioner, recovered.instance)
        return True
    except Exception as exc:  # noqa: BLE001 - the instance's name is in the log and the report
        get_logger().error("could not stop the instance at %s: %s", recovered.instance.url, exc)
        return False


def recovery_result(attempt: Attempt, targets: Targets, rto: float | None) -> dict:
    """The figures a DR and a drill both report; partial when the run failed (then with `failed_step`
    and `error` set by `failed`)."""
    recovered, clock, choice = attempt.recovered, attempt.clock, attempt.choice
    result: dict[str, Any] = {"ok": True, "steps": clock.steps, "rto_target_s": targets.rto_s,
                              "rpo_target_s": targets.rpo_s, "rto_s": rto, "backup_id": None, "kind": None,
                              "skipped_backups": [], "rpo_s": None, "integrity": None, "restore": None}
    if choice is not None:
        manifest = choice.manifest
        result |= {"backup_id": manifest.backup_id, "kind": manifest.kind, "source": manifest.source.series_name,
                   "skipped_backups": choice.skipped, "rpo_s": round(recovery.rpo_seconds(manifest, clock.trigger), 3)}
    if recovered is not None:
        result |= {"integrity": recovered.integrity.to_dict() if recovered.integrity else None,
                   "restore": {"files": recovered.restored.files, "bytes": recovered.restored.bytes,
                               "bytes_downloaded": recovered.restored.bytes_downloaded}}
    return result


def failed(result: dict, attempt: Attempt, exc: BaseException) -> dict:
    """The result of a run that stopped: which step, and why, in one line. The exception carries it
    too (as a failed verify's does), so the CLI prints the report before the error line."""
    result = result | {"ok": False, "failed_step": attempt.clock.failed_step() or "(before the first step)",
                       "error": " ".join(str(exc).split()) or type(exc).__name__}
    if not isinstance(exc, UsageError) and isinstance(exc, Exception):
        exc.result = result
    return result


def targets_report(result: dict) -> list[str]:
    """Warnings for missed targets, also sent as Prefect events an automation can act on."""
    missed = []
    for what in ("rto", "rpo"):
        value, target = result.get(f"{what}_s"), result.get(f"{what}_target_s")
        if value is not None and target is not None and value > target:
            missed.append(f"{what.upper()} {duration(value)} missed its target of {duration(target)}")
            emit_event(event=f"qilbee.recovery.{what}-missed",
                       resource={"prefect.resource.id": f"qilbee.backup.{result['backup_id']}"},
                       payload={"value_s": value, "target_s": target, "kind": result.get("kind")})
    return missed


def publish_report(key: str, title: str, result: dict, description: str, source_name: str | None) -> None:
    """Every outcome writes its report: the artifact history shows failed runs too, one key per source."""
    publish_markdown(artifact_key(key, result.get("source") or source_name), recovery_markdown(title, result), description)
