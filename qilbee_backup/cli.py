"""`qilbee-backup`: the command line, a thin shell over the flows (restic's cmd/ over internal/).

Every command but `emulator` is a Prefect flow run. Flows are imported only inside the command
that runs them, so the engine never depends on Prefect and `qilbee-backup emulator` starts fast.
Secrets given on the command line are handed to the flow through the environment, never as flow
parameters: parameters are stored by the Prefect API and shown in its UI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Sequence

from .destinations.url import S3Location, parse_url
from .errors import QilbeeBackupError, UsageError

API_KEY_ENV = "QILBEE_API_KEY"
TSIG_ENV = "QILBEE_TSIG_SECRET"


class _Parser(argparse.ArgumentParser):
    """argparse that fails with one line and exit 2 instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"qilbee-backup: error: {message}\n")


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the run's result as one JSON object on stdout")


def _add_repo(p: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        p.add_argument("--repo", action="append", required=True, metavar="URL",
                       help="repository: a path, file:///path or s3://bucket/prefix (repeat to fan out: 3-2-1)")
    else:
        p.add_argument("--repo", required=True, metavar="URL", help="repository: a path, file:///path or s3://bucket/prefix")


def _add_snapshot_source(p: argparse.ArgumentParser) -> None:
    """What backup and archive share: the server, how to take its snapshot, where it goes."""
    p.add_argument("--source", default="http://127.0.0.1:7474", metavar="URL", help="the QilbeeDB server")
    _add_repo(p, many=True)
    p.add_argument("--mode", choices=("auto", "online", "offline"), default="auto")
    p.add_argument("--container", metavar="NAME", help="Docker container running QilbeeDB (offline mode, path mapping)")
    p.add_argument("--data-path", metavar="HOST_DIR", help="where the server's data directory is readable here")
    p.add_argument("--api-key", help=f"API key for the admin routes (or set {API_KEY_ENV})")
    p.add_argument("--api-key-secret", metavar="BLOCK", help="name of a Prefect Secret block holding the API key")
    p.add_argument("--sse", choices=("AES256", "aws:kms"), help="S3 server-side encryption")
    p.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another run's lock (default: fail at once)")
    _add_source_name(p, "the database's name in the repository, its series for retention (default: HOST-PORT of --source)")
    p.add_argument("--keep-checkpoints", type=_non_negative_int, default=0, metavar="N",
                   help="server checkpoints to keep after the backup: 0 deletes the one it took; N keeps the newest N")


def _add_source_name(p: argparse.ArgumentParser, helptext: str) -> None:
    p.add_argument("--source-name", type=_source_name, metavar="NAME", help=helptext)


def _source_name(text: str) -> str:
    from .manifest import check_source_name

    try:
        return check_source_name(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_retention(p: argparse.ArgumentParser) -> None:
    for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        p.add_argument(f"--keep-{name}", type=_non_negative_int, metavar="N", help=f"keep the newest backup of each of the last N {name if name != 'last' else ''} buckets".replace("  ", " "))
    p.add_argument("--keep-within", metavar="DURATION", help="keep every backup younger than this, relative to the newest (7d, 4w, 12m, 1y)")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qilbee-backup", description="Backup and disaster recovery for QilbeeDB, as Prefect flows.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from .emulator.cli import add_arguments as add_emulator_arguments

    em = sub.add_parser("emulator", help="run the QilbeeDB-compatible emulator")
    add_emulator_arguments(em)

    b = sub.add_parser("backup", help="snapshot → copy → upload → verify → prune")
    _add_snapshot_source(b)
    b.add_argument("--kind", default="adhoc", help="the series this backup belongs to (daily, weekly, monthly, adhoc)")
    b.add_argument("--storage-class", metavar="CLASS", help="S3 storage class for uploaded objects")
    b.add_argument("--lock-days", type=_positive_int, metavar="N", help="S3 Object Lock: write blobs and manifests locked for N days")
    b.add_argument("--lock-mode", type=str.upper, choices=("GOVERNANCE", "COMPLIANCE"), default="GOVERNANCE",
                   help="with --lock-days: GOVERNANCE (privileged users may lift it) or COMPLIANCE (nobody can)")
    b.add_argument("--read-data", action="store_true", help="verify by downloading and re-hashing every blob")
    _add_retention(b)
    _add_json(b)

    a = sub.add_parser("archive", help="monthly cold-storage archive: snapshot → tar + zstd → upload in a storage class → verify → prune")
    _add_snapshot_source(a)
    a.add_argument("--kind", default="monthly", help="the archive series (retention and 'latest' work per series)")
    a.add_argument("--storage-class", default="GLACIER", metavar="CLASS",
                   help="S3 storage class of the archive file (GLACIER, DEEP_ARCHIVE, GLACIER_IR, ...); ignored for directories")
    a.add_argument("--read-data", action="store_true", help="re-read the uploaded archive where that needs no retrieval")
    a.add_argument("--spool-dir", metavar="DIR", help="where the archive file is built before upload (room for one compressed copy)")
    _add_retention(a)  # none given: the flow's default, 12 months
    _add_json(a)

    ls = sub.add_parser("list", help="list the backups (or archives) in a repository")
    _add_repo(ls)
    ls.add_argument("--kind", help="only this series")
    _add_source_name(ls, "only the backups of this source database")
    ls.add_argument("--archives", action="store_true", help="list the cold-storage archives instead of the backups")
    _add_json(ls)

    v = sub.add_parser("verify", help="check that every blob a backup needs is there (and intact, with --read-data)")
    _add_repo(v)
    v.add_argument("--backup", metavar="ID", help="one backup (an id or 'latest'); default: all")
    v.add_argument("--read-data", action="store_true", help="download, decompress and re-hash every blob")
    _add_json(v)

    pr = sub.add_parser("prune", help="apply retention to one series, then sweep unreferenced blobs")
    _add_repo(pr)
    pr.add_argument("--kind", help="only the series of this kind (default: every kind; each series separately)")
    _add_source_name(pr, "only the series of this source database (default: every source; retention never crosses sources)")
    _add_retention(pr)
    pr.add_argument("--grace", default="1h", metavar="DURATION", help="spare unreferenced blobs younger than this (a backup may be in flight)")
    pr.add_argument("--dry-run", action="store_true", help="say what would be kept and removed, change nothing")
    _add_json(pr)

    rs = sub.add_parser("restore", help="restore a backup into a data directory, checked file by file")
    _add_repo(rs)
    rs.add_argument("--backup", default="latest", metavar="ID", help="a backup id or 'latest' (default)")
    rs.add_argument("--kind", help="with latest: the newest of this series")
    _add_source_name(rs, "with latest: the newest backup of this source database")
    rs.add_argument("--data-dir", required=True, metavar="DIR", help="where to restore (missing or empty, or see --replace)")
    rs.add_argument("--replace", action="store_true", help="DIR holds data: move it aside, put it back if the restore fails its checks")
    rs.add_argument("--container", metavar="NAME", help="the Docker container using DIR: stopped, restored, started and checked")
    rs.add_argument("--source", metavar="URL", help="the container's URL for the check (default http://127.0.0.1:7474)")
    rs.add_argument("--server-cmd", metavar="CMD", help="server to check the restored data with ({data_dir}, {port}, {host}); default: the emulator")
    rs.add_argument("--no-check", action="store_true", help="skip starting a server on the restored data to compare its figures")
    rs.add_argument("--archive", metavar="ID", help="restore a cold-storage archive (an id or 'latest') instead of a backup")
    rs.add_argument("--retrieval-wait", type=float, default=43200, metavar="SECONDS",
                    help="archive in GLACIER/DEEP_ARCHIVE: wait this long for its retrieval; 0 starts it and stops (exit 75): run again later")
    rs.add_argument("--retrieval-tier", choices=("Expedited", "Standard", "Bulk"), default="Standard")
    rs.add_argument("--retrieval-days", type=_positive_int, default=7, metavar="DAYS", help="how long the retrieved copy stays readable")
    _add_json(rs)

    for name, helptext in (("dr", "disaster recovery: provision → restore → integrity check → DNS switch → resume"),
                           ("drill", "restore drill: the same on a throwaway instance, always torn down")):
        d = sub.add_parser(name, help=helptext)
        _add_repo(d)
        d.add_argument("--provider", choices=("process", "docker"), default="process")
        d.add_argument("--backup", metavar="ID", help="a backup id (default: the newest that passes a quick verify)")
        d.add_argument("--kind", help="choose among this series only")
        _add_source_name(d, "choose among this source database's backups only")
        d.add_argument("--server-cmd", metavar="CMD", help="process provider: the server command ({data_dir}, {port}, {host}); default: the emulator")
        d.add_argument("--image", default="qilbeedb/qilbeedb:latest", help="docker provider: the image")
        d.add_argument("--network", choices=("bridge", "host"), default="bridge", help="docker provider: published port or host networking")
        d.add_argument("--container-command", metavar="ARGS", help="docker provider: the container's arguments ({port}, {host}, {data_dir})")
        d.add_argument("--rto-target", type=float, default=3600, metavar="SECONDS")
        d.add_argument("--rpo-target", type=float, default=86400, metavar="SECONDS")
        d.add_argument("--health-timeout", type=float, default=120, metavar="SECONDS")
        if name == "dr":
            d.add_argument("--data-root", default="./qilbee-dr", metavar="DIR", help="the new instance's data directory goes under here")
            d.add_argument("--port", type=int, help="the new instance's port (default: a free one)")
            d.add_argument("--dns", choices=("hosts", "route53", "rfc2136"), help="switch this DNS provider's record to the new instance")
            d.add_argument("--record", metavar="FQDN", help="the DNS name to switch")
            d.add_argument("--address", default="127.0.0.1", help="the address the record gets (the new instance's host)")
            d.add_argument("--ttl", type=int, default=60)
            d.add_argument("--hosts-file", metavar="PATH", help="hosts provider: the file (default /etc/hosts)")
            d.add_argument("--zone-id", help="route53: the hosted zone id (default: found from the record)")
            d.add_argument("--zone-name", help="route53: the hosted zone name")
            d.add_argument("--dns-server", metavar="HOST", help="rfc2136: the primary server's address")
            d.add_argument("--dns-port", type=int, help="rfc2136: its port (default 53)")
            d.add_argument("--dns-zone", metavar="ZONE", help="rfc2136: the zone to update")
            d.add_argument("--tsig-key-name", metavar="NAME", help="rfc2136: the TSIG key's name")
            d.add_argument("--tsig-secret", metavar="BASE64", help=f"rfc2136: the TSIG secret (or set {TSIG_ENV})")
            d.add_argument("--tsig-algorithm", default=None, help="rfc2136: e.g. hmac-sha256 (default)")
            d.add_argument("--approve", action="store_true", help="pause for a person to approve the DNS switch in the Prefect UI")
        _add_json(d)

    sv = sub.add_parser("serve", help="serve every deployment of prefect.yaml with its schedule from this process")
    sv.add_argument("--config", default=None, metavar="FILE", help="the deployments file (default: the project's prefect.yaml)")
    sv.add_argument("--only", action="append", metavar="NAME", help="serve only this deployment (repeatable)")
    return parser


def _retention_from(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within") if getattr(args, k, None) not in (None, 0)}


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, sort_keys=True))
    else:
        from .report import render_text

        print(render_text(result))


def _snapshot_source(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters of _add_snapshot_source's flags, repositories checked first."""
    for url in args.repo:
        parse_url(url)
    if args.api_key:
        os.environ[API_KEY_ENV] = args.api_key  # to the flow through the environment, not its parameters
    return dict(source=args.source, repos=args.repo, mode=args.mode, container=args.container, data_path=args.data_path,
                api_key_env=API_KEY_ENV, api_key_secret=args.api_key_secret, sse=args.sse, lock_wait=args.lock_wait,
                source_name=args.source_name, keep_checkpoints=args.keep_checkpoints)


def _check_ids(args: argparse.Namespace) -> None:
    """Backup and archive ids are checked before anything runs: a bad one is a usage error, exit 2."""
    from .manifest import check_backup_ref

    for name in ("backup", "archive"):
        value = getattr(args, name, None)
        if value is not None:
            check_backup_ref(value)


def _run_command(args: argparse.Namespace) -> Any:
    _check_ids(args)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.command == "backup":
        common = _snapshot_source(args)
        if args.lock_days and not any(isinstance(parse_url(url), S3Location) for url in args.repo):
            raise UsageError("object lock (--lock-days) needs an s3:// repository; none of the repositories is one")
        from flows.backup import backup

        return backup(**common, kind=args.kind, storage_class=args.storage_class, lock_days=args.lock_days,
                      lock_mode=args.lock_mode, read_data=args.read_data, retention=_retention_from(args) or None)
    if args.command == "archive":
        common = _snapshot_source(args)
        from flows.archive import archive

        rules = _retention_from(args)
        return archive(**common, kind=args.kind, storage_class=args.storage_class, read_data=args.read_data,
                       spool_dir=args.spool_dir, **({"retention": rules} if rules else {}))
    if args.command == "list" and args.archives:
        parse_url(args.repo)
        from flows.archive import list_archives

        return list_archives(repo=args.repo, kind=args.kind, source_name=args.source_name)
    if args.command == "list":
        parse_url(args.repo)
        from flows.maintenance import list_backups

        return list_backups(repo=args.repo, kind=args.kind, source_name=args.source_name)
    if args.command == "verify":
        parse_url(args.repo)
        from flows.maintenance import verify

        return verify(repo=args.repo, backup=args.backup, read_data=args.read_data)
    if args.command == "prune":
        from .retention import parse_duration

        parse_url(args.repo)
        from .pipeline import parse_grace

        parse_grace(args.grace)
        if args.keep_within:
            parse_duration(args.keep_within)
        from flows.maintenance import prune

        return prune(repo=args.repo, kind=args.kind, retention=_retention_from(args), grace=args.grace, dry_run=args.dry_run,
                     source_name=args.source_name)
    if args.command == "restore":
        parse_url(args.repo)
        from flows.restore import restore

        return restore(repo=args.repo, data_dir=args.data_dir, backup=args.backup, kind=args.kind, source_name=args.source_name,
                       replace=args.replace,
                       container=args.container, source=args.source, server_cmd=args.server_cmd, check=not args.no_check,
                       archive=args.archive, retrieval_wait=args.retrieval_wait, retrieval_tier=args.retrieval_tier,
                       retrieval_days=args.retrieval_days)
    if args.command in ("dr", "drill"):
        parse_url(args.repo)
        common = dict(repo=args.repo, provider=args.provider, backup=args.backup, kind=args.kind,
                      source_name=args.source_name, server_cmd=args.server_cmd,
                      image=args.image, network=args.network, container_command=args.container_command,
                      rto_target_s=args.rto_target, rpo_target_s=args.rpo_target, health_timeout=args.health_timeout)
        if args.command == "drill":
            from flows.drill import drill

            return drill(**common)
        if args.dns and not args.record:
            raise UsageError("--dns needs --record FQDN")
        if args.tsig_secret:
            os.environ[TSIG_ENV] = args.tsig_secret  # to the flow through the environment, not its parameters
        from flows.disaster_recovery import disaster_recovery

        return disaster_recovery(
            **common, data_root=args.data_root, port=args.port, dns=args.dns, record=args.record, address=args.address,
            ttl=args.ttl, hosts_file=args.hosts_file, zone_id=args.zone_id, zone_name=args.zone_name,
            dns_server=args.dns_server, dns_port=args.dns_port, dns_zone=args.dns_zone, tsig_key_name=args.tsig_key_name,
            tsig_algorithm=args.tsig_algorithm, tsig_secret_env=TSIG_ENV, approve=args.approve)
    if args.command == "serve":
        from pathlib import Path

        from flows.serve import ROOT, serve_all

        serve_all(Path(args.config) if args.config else ROOT / "prefect.yaml", args.only)
        return None
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "emulator":
        from .emulator.cli import run as run_emulator

        return run_emulator(args)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request to the Prefect API drowns the progress an operator reads.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Prefect's event sender says it is flushing as the process exits: after the error line, not news.
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)
    try:
        result = _run_command(args)
    except QilbeeBackupError as e:
        report = getattr(e, "result", None)
        if report is not None:  # the run published its report before failing: show it too
            _print_result(report, getattr(args, "json", False))
        print(f"qilbee-backup: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("qilbee-backup: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        _print_result(result, getattr(args, "json", False))
    return 1 if isinstance(result, dict) and result.get("ok") is False else 0


if __name__ == "__main__":
    sys.exit(main())
