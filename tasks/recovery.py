"""Thin Prefect tasks of restore, disaster recovery and drills."""

from __future__ import annotations

import os
from pathlib import Path

from qilbee_backup import recovery
from qilbee_backup.client import QilbeeClient
from qilbee_backup.errors import UsageError
from qilbee_backup.provision import open_provisioner
from qilbee_backup.restorer import restore_backup
from tasks.steps import get_logger, step


@step("choose-backup")
def choose_backup(repo, backup: str | None, kind: str | None, source_name: str | None = None,
                  exclude: list[str] | None = None) -> recovery.Choice:
    logger = get_logger()
    choice = recovery.choose_backup(repo, backup, kind, source_name, exclude=exclude or ())
    for skipped in choice.skipped:
        logger.warning("skipped damaged backup %s: %s", skipped["backup_id"], skipped["problems"])
    logger.info("restoring backup %s (%s, %s)", choice.manifest.backup_id, choice.manifest.kind, choice.manifest.created_at.isoformat())
    return choice


@step("provision")
def provision(provider: str, options: dict, data_root: str, backup_id: str):
    """Where the new instance will live: a fresh data directory and a provisioner that can start it."""
    provisioner = open_provisioner(provider, **options)
    data_dir = Path(data_root).resolve() / f"qilbee-{backup_id}"
    if data_dir.exists() and any(data_dir.iterdir()):
        raise recovery.RecoveryError(f"{data_dir} already holds data: choose another --data-root or remove it")
    get_logger().info("provisioning a %s instance on %s", provider, data_dir)
    return provisioner, data_dir


@step("restore")
def restore(repo, manifest, data_dir: Path, replace_existing: bool = False):
    result = restore_backup(repo, manifest, data_dir, replace_existing=replace_existing)
    get_logger().info("restored %d files (%d bytes, %d downloaded) in %.1f s", result.files, result.bytes,
                          result.bytes_downloaded, result.duration_s)
    return result


@step("start-instance")
def start_instance(provisioner, data_dir: Path, port: int | None, name: str | None):
    instance = provisioner.start(data_dir, port=port, name=name)
    get_logger().info("instance up at %s (%s)", instance.url,
                          f"pid {instance.pid}" if instance.pid else f"container {instance.container}")
    return instance


@step("integrity-check")
def integrity_check(instance, manifest, restored_files: int) -> recovery.IntegrityReport:
    logger = get_logger()
    with QilbeeClient(instance.url) as client:
        report = recovery.check_instance(client, manifest, restored_files)
    if report.ok:
        figures = report.compared.get("figures")
        totals = figures.get("instance", {}) if isinstance(figures, dict) else {}
        logger.info("integrity check passed: %s nodes, %s relationships in %d graph(s), as at backup time",
                    totals.get("nodeCount", "?"), totals.get("relationshipCount", "?"), len(totals.get("graphs") or {}))
    else:
        logger.error("integrity check failed: %s", "; ".join(report.differences))
    return report


def _dns_provider(switch):
    """The switch's DNS provider; a TSIG secret comes from the environment, never a flow parameter."""
    options = switch.options()
    if switch.provider == "rfc2136" and switch.tsig_key_name:
        secret = os.environ.get(switch.tsig_secret_env)
        if not secret:
            raise UsageError(f"the TSIG key {switch.tsig_key_name} needs its secret in the environment variable "
                             f"{switch.tsig_secret_env} (or --tsig-secret)")
        options["key_secret"] = secret
    from qilbee_backup.dns import open_dns_provider  # dnspython: only a run that switches DNS pays its import

    return open_dns_provider(switch.provider, **options)


@step("check-dns")
def check_dns(switch) -> list[str] | None:
    """Before anything is provisioned: the DNS switch can be made (provider options, TSIG secret, the
    server answers); what the record points at now."""
    with _dns_provider(switch) as provider:
        current = provider.current(switch.record)
    get_logger().info("DNS %s: %s points at %s now", switch.provider, switch.record, ", ".join(current or []) or "nothing")
    return current


@step("dns-switch")
def dns_switch(switch):
    with _dns_provider(switch) as provider:
        change = provider.switch(switch.record, [switch.address], ttl=switch.ttl)
    get_logger().info("DNS %s: %s → %s (was %s)", switch.provider, change.record, change.new, change.old)
    return change


@step("resume")
def resume(instance) -> dict:
    """The instance serves: one last /health through the switched-to URL."""
    with QilbeeClient(instance.url) as client:
        return client.health()


@step("teardown")
def teardown(provisioner, instance) -> None:
    provisioner.stop(instance)
    get_logger().info("instance %s stopped", instance.url)
