"""Thin steps of a failback, and the one a disaster recovery takes to leave its record for it."""

from __future__ import annotations

from qilbee_backup import failback as judge
from qilbee_backup import recovery_records
from qilbee_backup.client import QilbeeClient
from qilbee_backup.errors import QilbeeBackupError
from qilbee_backup.failback import FailbackError
from qilbee_backup.provision import Instance, open_provisioner
from qilbee_backup.report import utc
from tasks.recovery import _dns_provider as dns_provider  # the one place a TSIG secret is read (from the environment)
from tasks.steps import get_logger, step


# No retry (as record-drill): the store retries a transient fault itself, and a retried write after a
# lost answer would record the recovery twice.
@step("record-recovery")
def record_recovery(repo, record: dict) -> str:
    """Keep what a failback needs beside the backups: recoveries/<id>.json."""
    record_id = recovery_records.record_recovery(repo, record)
    get_logger().info("recovery recorded in %s as recoveries/%s.json (fail back with: failback --recovery %s)",
                      repo.url, record_id, record_id)
    return record_id


@step("load-recovery")
def load_recovery(repo, ref: str) -> dict:
    """The recovery to undo; refused when it was failed back already."""
    recovery = recovery_records.load_recovery(repo, ref)
    done = recovery_records.failback_of(repo, recovery["record_id"])
    if done is not None:
        raise FailbackError(f"recovery {recovery['record_id']} was failed back already, at {utc(done.get('finished_at'))} "
                            f"(failbacks/{done.get('record_id')}.json); nothing changed")
    inst = recovery.get("instance") or {}
    get_logger().info("failing back recovery %s: backup %s of %s, served by the DR instance at %s", recovery["record_id"],
                      recovery.get("backup_id"), recovery.get("source"), inst.get("url"))
    return recovery


@step("check-primary")
def check_primary(url: str, api_key: str | None, graphs: list[str] | None) -> dict:
    """The original primary answers /health as healthy; its figures (graphs: the names to count where
    the server cannot list them)."""
    with QilbeeClient(url, api_key=api_key, retries=2) as client:
        health = client.health()
        if health.get("status") != "healthy":
            raise FailbackError(f"the primary at {url} is not healthy (/health says {health.get('status')!r}); "
                                "nothing changed")
        found = judge.figures(client.stats(graphs=graphs))
    get_logger().info("primary %s is healthy: %s nodes, %s relationships", url, found["nodeCount"], found["relationshipCount"])
    return {"url": url, "health": health.get("status"), "version": health.get("version"), "figures": found}


@step("check-dr-instance")
def check_dr_instance(instance: dict, graphs: list[str] | None) -> dict:
    """The DR instance's figures now: what it took while it served. One that cannot be read says why
    (then nothing proves the primary holds as much)."""
    url = instance.get("url")
    try:
        with QilbeeClient(url, retries=1) as client:
            found = judge.figures(client.stats(graphs=graphs))
    except QilbeeBackupError as exc:
        get_logger().warning("the DR instance at %s cannot be read: %s", url, exc)
        return {"url": url, "error": " ".join(str(exc).split())}
    get_logger().info("DR instance %s: %s nodes, %s relationships", url, found["nodeCount"], found["relationshipCount"])
    return {"url": url, "figures": found}


@step("dns-switch-back")
def dns_switch_back(switch, change) -> list[str] | None:
    """Put back the value the record had before the recovery (remove it if it had none); what it holds now."""
    with dns_provider(switch) as provider:
        provider.rollback(change)
        now = provider.current(change.record)
    get_logger().info("DNS %s: %s → %s (was %s)", switch.provider, change.record, ", ".join(now or []) or "nothing",
                      ", ".join(change.new))
    return now


@step("stop-dr-instance")
def stop_dr_instance(instance: dict) -> None:
    """Stop the DR instance (by its PID, only while it still is that server; or its container). Its data
    directory stays."""
    described = Instance.from_dict(instance)
    with open_provisioner(described.provider) as provisioner:
        provisioner.stop(described)
        if provisioner.is_running(described):
            raise FailbackError(f"the DR instance at {described.url} is still running after it was stopped")
    get_logger().info("DR instance %s stopped; its data stays in %s", described.url, described.data_dir)


@step("record-failback")
def record_failback(repo, record: dict) -> str:
    record_id = recovery_records.record_failback(repo, record)
    get_logger().info("failback recorded in %s as failbacks/%s.json", repo.url, record_id)
    return record_id
