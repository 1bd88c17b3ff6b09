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

from .errors import QilbeeBackupError, UsageError

API_KEY_ENV = "QILBEE_API_KEY"


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qilbee-backup", description="Backup and disaster recovery for QilbeeDB, as Prefect flows.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from .emulator.cli import add_arguments as add_emulator_arguments

    em = sub.add_parser("emulator", help="run the QilbeeDB-compatible emulator")
    add_emulator_arguments(em)

    b = sub.add_parser("backup", help="snapshot → copy → upload → verify → prune")
    b.add_argument("--source", default="http://127.0.0.1:7474", metavar="URL", help="the QilbeeDB server")
    _add_repo(b, many=True)
    b.add_argument("--mode", choices=("auto", "online", "offline"), default="auto")
    b.add_argument("--container", metavar="NAME", help="Docker container running QilbeeDB (offline mode, path mapping)")
    b.add_argument("--data-path", metavar="HOST_DIR", help="where the server's data directory is readable here")
    b.add_argument("--kind", default="adhoc", help="the series this backup belongs to (daily, weekly, monthly, adhoc)")
    b.add_argument("--api-key", help=f"API key for the admin routes (or set {API_KEY_ENV})")
    b.add_argument("--api-key-secret", metavar="BLOCK", help="name of a Prefect Secret block holding the API key")
    b.add_argument("--storage-class", metavar="CLASS", help="S3 storage class for uploaded objects")
    b.add_argument("--sse", choices=("AES256", "aws:kms"), help="S3 server-side encryption")
    b.add_argument("--read-data", action="store_true", help="verify by downloading and re-hashing every blob")
    b.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another run's lock (default: fail at once)")
    _add_retention(b)
    _add_json(b)

    ls = sub.add_parser("list", help="list the backups in a repository")
    _add_repo(ls)
    ls.add_argument("--kind", help="only this series")
    _add_json(ls)

    v = sub.add_parser("verify", help="check that every blob a backup needs is there (and intact, with --read-data)")
    _add_repo(v)
    v.add_argument("--backup", metavar="ID", help="one backup (an id or 'latest'); default: all")
    v.add_argument("--read-data", action="store_true", help="download, decompress and re-hash every blob")
    _add_json(v)

    pr = sub.add_parser("prune", help="apply retention to one series, then sweep unreferenced blobs")
    _add_repo(pr)
    pr.add_argument("--kind", help="the series to apply the rules to (default: each series separately)")
    _add_retention(pr)
    pr.add_argument("--grace", default="1h", metavar="DURATION", help="spare unreferenced blobs younger than this (a backup may be in flight)")
    pr.add_argument("--dry-run", action="store_true", help="say what would be kept and removed, change nothing")
    _add_json(pr)
    return parser


def _retention_from(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within") if getattr(args, k, None) not in (None, 0)}


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, sort_keys=True))
    else:
        from .report import render_text

        print(render_text(result))


def _run_command(args: argparse.Namespace) -> Any:
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.command == "backup":
        from .destinations.url import parse_url

        for url in args.repo:
            parse_url(url)
        if args.api_key:
            os.environ[API_KEY_ENV] = args.api_key  # to the flow through the environment, not its parameters
        from flows.backup import backup

        return backup(
            source=args.source, repos=args.repo, mode=args.mode, container=args.container,
            data_path=args.data_path, kind=args.kind, api_key_env=API_KEY_ENV,
            api_key_secret=args.api_key_secret, storage_class=args.storage_class, sse=args.sse,
            read_data=args.read_data, lock_wait=args.lock_wait, retention=_retention_from(args) or None,
        )
    if args.command == "list":
        from .destinations.url import parse_url

        parse_url(args.repo)
        from flows.maintenance import list_backups

        return list_backups(repo=args.repo, kind=args.kind)
    if args.command == "verify":
        from .destinations.url import parse_url

        parse_url(args.repo)
        from flows.maintenance import verify

        return verify(repo=args.repo, backup=args.backup, read_data=args.read_data)
    if args.command == "prune":
        from .destinations.url import parse_url
        from .retention import parse_duration

        parse_url(args.repo)
        from .pipeline import parse_grace

        parse_grace(args.grace)
        if args.keep_within:
            parse_duration(args.keep_within)
        from flows.maintenance import prune

        return prune(repo=args.repo, kind=args.kind, retention=_retention_from(args), grace=args.grace, dry_run=args.dry_run)
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "emulator":
        from .emulator.cli import run as run_emulator

        return run_emulator(args)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = _run_command(args)
    except QilbeeBackupError as e:
        print(f"qilbee-backup: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("qilbee-backup: interrupted", file=sys.stderr)
        return 130
    _print_result(result, getattr(args, "json", False))
    return 1 if isinstance(result, dict) and result.get("ok") is False else 0


if __name__ == "__main__":
    sys.exit(main())
