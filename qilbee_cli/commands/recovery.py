"""dr and drill: provision → restore → integrity check (→ DNS switch → resume), timed, reported."""

from __future__ import annotations

import argparse
from typing import Any

from qilbee_cli.common import (
    MODE,
    TSIG_ENV,
    add_json,
    add_repo,
    add_source_name,
    pick,
    run_flow,
    secret_to_env,
)

INSTANCE = {"provider": "--provider", "server_cmd": "--server-cmd", "image": "--image", "network": "--network",
            "container_command": "--container-command", "port": "--port", "health_timeout": "--health-timeout",
            "server_env": "--server-env"}
TARGETS = {"rto_s": "--rto-target", "rpo_s": "--rpo-target"}
DNS = {"record": "--record", "address": "--address", "ttl": "--ttl", "hosts_file": "--hosts-file", "zone_id": "--zone-id",
       "zone_name": "--zone-name", "server": "--dns-server", "port": "--dns-port", "zone": "--dns-zone",
       "tsig_key_name": "--tsig-key-name", "tsig_algorithm": "--tsig-algorithm"}
# parameter path -> flag, for one-line errors that name what the user typed
FLAGS = {"dns": "--dns", **{f"instance.{k}": v for k, v in INSTANCE.items()}, **{f"targets.{k}": v for k, v in TARGETS.items()},
         **{f"dns.{k}": v for k, v in DNS.items()}}


def add_common(p: argparse.ArgumentParser) -> None:
    add_repo(p)
    p.add_argument("--backup", metavar="ID", help="a backup id, restored or the run fails (default: the newest intact backup)")
    p.add_argument("--kind", help="choose among this series only")
    add_source_name(p, "choose among this source database's backups only")
    p.add_argument("--provider", help="process (default: a server command here) or docker (a container)")
    p.add_argument("--server-cmd", metavar="CMD", help="process: the server command ({data_dir}, {port}, {host}); default: the emulator")
    p.add_argument("--image", help="docker: the image (default qilbeedb/qilbeedb:latest)")
    p.add_argument("--network", help="docker: bridge (default: a published port) or host networking")
    p.add_argument("--container-command", metavar="ARGS", help="docker: the container's arguments ({port}, {host}, {data_dir})")
    p.add_argument("--health-timeout", type=float, metavar="SECONDS", help="wait this long for /health (default 120)")
    p.add_argument("--server-env", action="append", metavar="NAME",
                   help="an environment variable the new server gets from here (repeatable; it gets no others)")
    p.add_argument("--rto-target", type=float, metavar="SECONDS", help="the recovery time objective (default 3600)")
    p.add_argument("--rpo-target", type=float, metavar="SECONDS", help="the recovery point objective (default 86400)")
    add_json(p)


def _given(given: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """A model's fields from the flags that set them (field -> "--flag"), those given only."""
    dests = {field: flag[2:].replace("-", "_") for field, flag in fields.items()}
    return {field: given[dest] for field, dest in dests.items() if dest in given}


def common(given: dict[str, Any]) -> dict[str, Any]:
    params = pick(given, "repo", "backup", "kind", "source_name")
    instance = _given(given, INSTANCE)
    if instance:
        params["instance"] = instance
    targets = _given(given, TARGETS)
    if targets:
        params["targets"] = targets
    return params


class Drill:
    NAME = "drill"
    HELP = "restore drill: the same on a throwaway instance, always torn down"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_common(p)

    @staticmethod
    def run(given: dict[str, Any]) -> Any:
        from flows.drill import drill

        return run_flow(drill, common(given), FLAGS)


class DisasterRecovery:
    NAME = "dr"
    HELP = "disaster recovery: provision → restore → integrity check → DNS switch → resume"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_common(p)
        p.add_argument("--data-root", metavar="DIR", help="the new instance's data directory goes under here (default ./qilbee-dr)")
        p.add_argument("--port", type=int, help="the new instance's port (default: a free one)")
        p.add_argument("--dns", help="switch this DNS provider's record to the new instance: hosts, route53 or rfc2136")
        p.add_argument("--record", metavar="FQDN", help="the DNS name to switch")
        p.add_argument("--address", help="the address the record gets (default 127.0.0.1: the new instance's host)")
        p.add_argument("--ttl", type=int, help="the record's TTL in seconds (default 60)")
        p.add_argument("--hosts-file", metavar="PATH", help="hosts: the file (default /etc/hosts)")
        p.add_argument("--zone-id", help="route53: the hosted zone id (default: found from the record)")
        p.add_argument("--zone-name", help="route53: the hosted zone name")
        p.add_argument("--dns-server", metavar="HOST", help="rfc2136: the primary server's address")
        p.add_argument("--dns-port", type=int, help="rfc2136: its port (default 53)")
        p.add_argument("--dns-zone", metavar="ZONE", help="rfc2136: the zone to update")
        p.add_argument("--tsig-key-name", metavar="NAME", help="rfc2136: the TSIG key's name")
        p.add_argument("--tsig-secret", metavar="BASE64", help=f"rfc2136: the TSIG secret (or set {TSIG_ENV})")
        p.add_argument("--tsig-algorithm", help="rfc2136: hmac-sha256 (default), hmac-sha512, ...")
        p.add_argument("--approve", action="store_true", help="pause for a person to approve the DNS switch in the Prefect UI")
        p.add_argument("--approval-timeout", type=float, metavar="SECONDS", help="no decision within this declines (default 3600)")
        p.add_argument("--keep-failed-instance", action="store_true",
                       help="keep the new instance running when the recovery fails or is declined (it is named in the error)")

    @staticmethod
    def run(given: dict[str, Any]) -> Any:
        from flows.disaster_recovery import disaster_recovery

        if given.get("approve") and not MODE.prefect:
            raise _usage("--approve waits for a person in the Prefect UI: it needs a Prefect API (set PREFECT_API_URL)")
        secret_to_env(given, "tsig_secret", TSIG_ENV)
        params = common(given) | pick(given, "data_root", "approve", "keep_failed_instance",
                                      approval_timeout_s="approval_timeout")
        switch = _given(given, DNS)
        if "dns" in given:
            params["dns"] = {"provider": given["dns"], **switch}
        elif switch:
            flag = DNS[next(iter(switch))]
            raise _usage(f"{flag} needs --dns hosts|route53|rfc2136")
        return run_flow(disaster_recovery, params, FLAGS | {"approval_timeout_s": "--approval-timeout"})


def _usage(message: str):
    from qilbee_backup.errors import UsageError

    return UsageError(message)
