"""The guide's disaster recovery: provision → restore → verify data integrity → update DNS → resume.

Every step is timed; the result reports RTO (trigger to DNS switched) and RPO (age of the restored
backup at the trigger) against their targets. An integrity mismatch stops the run before DNS is touched.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, pause_flow_run
from prefect.input import RunInput

from flows.instance_recovery import StepClock, provisioner_options, recovery_result, restore_newest_intact, targets_report
from qilbee_backup import pipeline, recovery
from qilbee_backup.report import recovery_markdown
from tasks import recovery as steps
from tasks.artifacts import publish_markdown


class SwitchApproval(RunInput):
    """Shown in the Prefect UI before the DNS switch."""

    approve: bool = True
    note: str = ""


def dns_options(dns: str, hosts_file: str | None, zone_id: str | None, zone_name: str | None, dns_server: str | None,
                dns_port: int | None, dns_zone: str | None, tsig_key_name: str | None, tsig_algorithm: str | None) -> dict:
    if dns == "hosts":
        return {"path": hosts_file}
    if dns == "route53":
        return {"zone_id": zone_id, "zone_name": zone_name}
    return {"server": dns_server, "port": dns_port, "zone": dns_zone, "key_name": tsig_key_name, "key_algorithm": tsig_algorithm}


@flow(name="disaster-recovery")
def disaster_recovery(
    repo: str,
    provider: str = "process",
    backup: str | None = None,
    kind: str | None = None,
    source_name: str | None = None,
    data_root: str = "./qilbee-dr",
    port: int | None = None,
    server_cmd: str | None = None,
    image: str | None = "qilbeedb/qilbeedb:latest",
    network: str | None = "bridge",
    container_command: str | None = None,
    dns: str | None = None,
    record: str | None = None,
    address: str = "127.0.0.1",
    ttl: int = 60,
    hosts_file: str | None = None,
    zone_id: str | None = None,
    zone_name: str | None = None,
    dns_server: str | None = None,
    dns_port: int | None = None,
    dns_zone: str | None = None,
    tsig_key_name: str | None = None,
    tsig_algorithm: str | None = None,
    tsig_secret_env: str | None = "QILBEE_TSIG_SECRET",
    approve: bool = False,
    rto_target_s: float = 3600,
    rpo_target_s: float = 86400,
    health_timeout: float = 120.0,
) -> dict:
    """Bring QilbeeDB back from a backup on a new instance and point DNS at it.

    Args:
        repo: The repository to recover from: a path, file:///path or s3://bucket/prefix.
        provider: Where the new instance runs: process (a server command on this machine) or docker.
        backup: A backup id (restored or the run fails); empty takes the newest intact backup: one that fails a
            quick verify or turns out damaged while restored is skipped, and named in the report.
        kind: Choose among this series only (daily, weekly, monthly, adhoc).
        source_name: Choose among this source database's backups only (its name, as `list` shows it).
        data_root: The new instance's data directory is made under here.
        port: The new instance's port; empty picks a free one.
        server_cmd: process provider: the server command, with {data_dir}, {port} and {host}; empty runs
            the bundled emulator (give the real qilbeedb binary here).
        image: docker provider: the server image.
        network: docker provider: bridge (a published port) or host networking.
        container_command: docker provider: the container's arguments, with {port}, {host}, {data_dir}.
        dns: Switch this DNS provider's record to the new instance: hosts, route53 or rfc2136; empty skips it.
        record: The DNS name to switch (e.g. qilbeedb.example.com).
        address: The address the record gets (the new instance's host).
        ttl: The record's TTL in seconds.
        hosts_file: hosts provider: the hosts-format file (default /etc/hosts).
        zone_id: route53: the hosted zone id (default: found from the record).
        zone_name: route53: the hosted zone's name.
        dns_server: rfc2136: the primary server's address.
        dns_port: rfc2136: its port (default 53).
        dns_zone: rfc2136: the zone to update.
        tsig_key_name: rfc2136: the TSIG key's name.
        tsig_algorithm: rfc2136: the TSIG algorithm (default hmac-sha256).
        tsig_secret_env: rfc2136: the environment variable holding the TSIG secret (never a parameter).
        approve: Pause before the DNS switch until a person approves it in the Prefect UI.
        rto_target_s: The recovery time objective in seconds (the guide: under 1 hour).
        rpo_target_s: The recovery point objective in seconds (the guide: under 24 hours).
        health_timeout: Seconds to wait for the new instance to answer /health.
    """
    logger = get_run_logger()
    if dns and not record:
        raise recovery.RecoveryError("--dns needs --record FQDN (the name to point at the new instance)")
    clock = StepClock()
    repository = pipeline.open_repository(repo)
    recovered = restore_newest_intact(
        clock, repository, backup, kind, source_name, provider,
        provisioner_options(provider, server_cmd, image, network, container_command, health_timeout), data_root)
    choice, provisioner, data_dir, restored = recovered.choice, recovered.provisioner, recovered.data_dir, recovered.result
    manifest = choice.manifest
    instance = clock.run("start-instance", steps.start_instance, provisioner, data_dir, port, None)
    integrity = clock.run("integrity-check", steps.integrity_check, instance, manifest, restored.files)
    if not integrity.ok:
        steps.teardown(provisioner, instance)
        raise recovery.RecoveryError(
            f"integrity check failed for backup {manifest.backup_id}; DNS not touched; the restored data stays in {data_dir}: "
            + "; ".join(integrity.differences))

    change = None
    if dns:
        if approve:
            answer = pause_flow_run(wait_for_input=SwitchApproval.with_initial_data(
                description=f"Switch {record} to {address} ({instance.url}, backup {manifest.backup_id})?"), timeout=3600)
            if not answer.approve:
                raise recovery.RecoveryError(f"the DNS switch of {record} was not approved ({answer.note}); the instance runs at {instance.url}")
        change = clock.run("dns-switch", steps.dns_switch, dns,
                           dns_options(dns, hosts_file, zone_id, zone_name, dns_server, dns_port, dns_zone, tsig_key_name, tsig_algorithm),
                           record, address, ttl, tsig_secret_env)
    rto = clock.elapsed()
    clock.run("resume", steps.resume, instance)

    result = recovery_result(choice, clock, rto, rto_target_s, rpo_target_s, integrity, restored)
    result["instance"] = {k: v for k, v in {"url": instance.url, "pid": instance.pid, "container": instance.container,
                                            "data_dir": str(instance.data_dir), "provider": instance.provider}.items() if v is not None}
    result["dns"] = {"record": change.record, "old": change.old, "new": change.new} if change else None
    result["warnings"] = targets_report(result)
    for warning in result["warnings"]:
        logger.warning(warning)
    publish_markdown("disaster-recovery-report", recovery_markdown("Disaster recovery", result), f"DR from {repo}")
    return result
