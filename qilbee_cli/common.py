"""What every command shares: the one-line argparse, common flags, validating a flow's parameters
before it runs, and printing a result."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from qilbee_backup.errors import UsageError

API_KEY_ENV = "QILBEE_API_KEY"
TSIG_ENV = "QILBEE_TSIG_SECRET"
RETENTION_FLAGS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within")


class Parser(argparse.ArgumentParser):
    """argparse that fails with one line and exit 2 instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"qilbee-backup: error: {message}\n")


# -- flags --------------------------------------------------------------------------------------------
# Types stay plain (str, int, float): a value's rules live in the flow's parameter types, which the
# CLI checks before the run. argparse only turns text into a number.


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the run's result as one JSON object on stdout")


def add_repo(p: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        p.add_argument("--repo", action="append", required=True, metavar="URL",
                       help="repository: a path, file:///path or s3://bucket/prefix (repeat to fan out: 3-2-1)")
    else:
        p.add_argument("--repo", required=True, metavar="URL", help="repository: a path, file:///path or s3://bucket/prefix")


def add_source_name(p: argparse.ArgumentParser, helptext: str) -> None:
    p.add_argument("--source-name", metavar="NAME", help=helptext)


def add_retention(p: argparse.ArgumentParser) -> None:
    for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        bucket = "" if name == "last" else f" {name}"
        p.add_argument(f"--keep-{name}", type=int, metavar="N", help=f"keep the newest backup of each of the last N{bucket} buckets")
    p.add_argument("--keep-within", metavar="DURATION", help="keep every backup younger than this, relative to the newest (7d, 4w, 12m, 1y)")


def retention(given: dict[str, Any]) -> dict[str, Any] | None:
    """The --keep-* flags given, as the flows' Retention; None when none was."""
    rules = {k: given.pop(k) for k in RETENTION_FLAGS if k in given}
    return rules or None


def pick(given: dict[str, Any], *names: str, **renamed: str) -> dict[str, Any]:
    """Flow parameters from the flags given: `names` keep their name, `renamed` maps param=flag."""
    params = {n: given[n] for n in names if n in given}
    params.update({param: given[flag] for param, flag in renamed.items() if flag in given})
    return params


def secret_to_env(given: dict[str, Any], flag: str, variable: str) -> None:
    """A secret given on the command line reaches the flow through the environment, never as a flow
    parameter: parameters are stored by the Prefect API and shown in its UI."""
    value = given.get(flag)
    if value is not None:
        if not str(value).strip():
            raise UsageError(f"--{flag.replace('_', '-')} is empty")
        os.environ[variable] = value


def add_password(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password-file", metavar="FILE",
                   help="the repository's passphrase: the first line of FILE (or set QILBEE_PASSWORD or "
                        "QILBEE_PASSWORD_FILE; on a terminal it is asked for)")


def use_passwords(given: dict[str, Any]) -> None:
    """Where this command finds a repository's passphrase, asked only when an encrypted repository is
    opened: --password-file, then QILBEE_PASSWORD / QILBEE_PASSWORD_FILE, then a prompt on a terminal.
    The passphrase stays in this process: never a flow parameter, never in the environment."""
    import sys

    from qilbee_backup.crypto import add_password_source, read_password_file

    path = given.pop("password_file", None)
    if path is not None:
        password = read_password_file(path)  # unreadable or empty: one line, exit 2, before anything runs
        add_password_source(lambda: password)
    if sys.stdin.isatty() and sys.stderr.isatty():
        asked: list[str] = []

        def prompt() -> str | None:
            if not asked:
                import getpass

                asked.append(getpass.getpass("repository passphrase: ", stream=sys.stderr))
            return asked[0] or None

        add_password_source(prompt, first=False, interactive=True)


def open_repositories_ahead(given: dict[str, Any]) -> bool:
    """A direct run: start opening the repositories named (their KDF, their first requests) while the
    runbook is imported and the input checked; see repository.open_ahead. Whether any was started."""
    named = given.get("repo")
    urls = [named] if isinstance(named, str) else [u for u in named or [] if isinstance(u, str)]
    if not any(urls):
        return False
    from qilbee_backup.ahead import open_ahead

    for url in filter(None, urls):
        open_ahead(url)
    return True


# -- validate, then run ---------------------------------------------------------------------------------


def run_flow(runbook: Any, params: dict[str, Any], flags: dict[str, str] | None = None, *, read_only: bool = False) -> Any:
    """Validate params against the runbook's own signature (its types, ranges and patterns: the same the
    Prefect UI form and API enforce), then run it: as a Prefect flow run when a Prefect API is
    configured (visible in the UI), else directly. A bad value is one UsageError line naming the flag,
    and nothing runs. flags: parameter path ("dns.record") -> the flag that sets it. read_only
    commands never create a flow run."""
    validate(runbook, params, flags or {})
    if MODE.prefect and not read_only:
        import flows.deployed

        return getattr(flows.deployed, runbook.__name__)(**params)
    if not read_only:
        logging.getLogger("qilbee_backup.run").info(
            "running without Prefect (no API configured): this run is not recorded; set PREFECT_API_URL (or "
            "pass --prefect) to record it in the Prefect UI")
    return runbook(**params)


def validate(runbook: Any, params: dict[str, Any], flags: dict[str, str]) -> dict[str, Any]:
    from pydantic import ValidationError

    from flows.runbook import first_problem
    from flows.runbook import validate as check

    try:
        return check(runbook, params)
    except ValidationError as exc:
        loc, msg = first_problem(exc)
        msg = {"Field required": "is required here", "Extra inputs are not permitted": "is not used here"}.get(msg, msg)
        raise UsageError(f"{flag_for(loc, flags)}: {msg}") from None


def flag_for(loc: str, flags: dict[str, str]) -> str:
    """The flag behind a parameter path: explicit mappings first; a model's discriminator tag
    (dns.rfc2136.server) and list indexes (repos.0) are skipped."""
    parts = [p for p in loc.split(".") if not p.isdigit() and p not in ("hosts", "route53", "rfc2136")]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in flags:
            return flags[key]
    return "--" + parts[-1].replace("_", "-") if parts else loc


# -- with or without Prefect -------------------------------------------------------------------------------


class _Mode:
    prefect = False


MODE = _Mode()


def add_prefect_choice(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--prefect", dest="prefect", action="store_true",
                       help="run as a Prefect flow run (recorded, visible in the UI); the default when a Prefect API is configured")
    group.add_argument("--no-prefect", dest="prefect", action="store_false",
                       help="run the steps directly (nothing recorded, no Prefect start-up); the default without an API")


def prefect_api_configured() -> bool:
    """PREFECT_API_URL in the environment, or in the active Prefect profile (read without importing Prefect)."""
    if os.environ.get("PREFECT_API_URL", "").strip():
        return True
    import tomllib
    from pathlib import Path

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    try:
        profiles = tomllib.loads((home / "profiles.toml").read_text())
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    settings = (profiles.get("profiles") or {}).get(active) or {}
    return bool(str(settings.get("PREFECT_API_URL", "")).strip())


# -- output -----------------------------------------------------------------------------------------------


def print_result(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, sort_keys=True))
    else:
        from qilbee_backup.report import render_text

        print(render_text(result))


# -- what backup and archive share ----------------------------------------------------------------------

SOURCE_FLAGS = {"repos": "--repo", "source": "--source", "data_path": "--data-path", "api_key_secret": "--api-key-secret"}


def add_snapshot_source(p: argparse.ArgumentParser) -> None:
    """The server, how to take its snapshot, where it goes."""
    p.add_argument("--source", metavar="URL", help="the QilbeeDB server (default http://127.0.0.1:7474)")
    add_repo(p, many=True)
    p.add_argument("--mode", help="auto (default), online or offline")
    p.add_argument("--container", metavar="NAME", help="Docker container running QilbeeDB (offline mode, path mapping)")
    p.add_argument("--data-path", metavar="HOST_DIR", help="where the server's data directory is readable here")
    p.add_argument("--api-key", help=f"API key for the admin routes (or set {API_KEY_ENV})")
    p.add_argument("--api-key-secret", metavar="BLOCK", help="name of a Prefect Secret block holding the API key")
    p.add_argument("--sse", help="S3 server-side encryption: AES256 or aws:kms")
    p.add_argument("--storage-class", metavar="CLASS", help="S3 storage class of what is uploaded (STANDARD_IA, GLACIER, ...)")
    p.add_argument("--lock-wait", type=float, metavar="SECONDS", help="wait this long for another run's lock (default: fail at once)")
    add_source_name(p, "the database's name in the repository, its series for retention (default: HOST-PORT of --source)")
    p.add_argument("--keep-checkpoints", type=int, metavar="N",
                   help="server checkpoints to keep after the backup: 0 (default) deletes the one it took; N keeps the newest N")
    p.add_argument("--kind", help="the series (daily, weekly, monthly, adhoc)")
    p.add_argument("--read-data", action="store_true", help="verify by re-reading every byte uploaded")
    p.add_argument("--insecure-no-encryption", action="store_true",
                   help="make a new repository unencrypted: readable by whoever can read the bucket (default: encrypted)")
    add_retention(p)
    add_json(p)


def snapshot_source(given: dict[str, Any]) -> dict[str, Any]:
    secret_to_env(given, "api_key", API_KEY_ENV)
    params = pick(given, "source", "mode", "container", "data_path", "api_key_secret", "sse", "storage_class", "lock_wait",
                  "source_name", "keep_checkpoints", "kind", "read_data", "insecure_no_encryption", repos="repo")
    if "api_key" in given:
        params["api_key_env"] = API_KEY_ENV
    rules = retention(given)
    if rules is not None:
        params["retention"] = rules
    return params
