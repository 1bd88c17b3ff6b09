"""init and key: make an encrypted repository; list, add, remove and change its passphrases."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from qilbee_cli.common import add_json, add_repo, pick, run_flow


class Init:
    NAME = "init"
    HELP = "make a new repository (encrypted; --insecure-no-encryption for a readable one)"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_repo(p)
        p.add_argument("--insecure-no-encryption", action="store_true",
                       help="store backups readable by whoever can read the location")
        add_kms_key(p, "wrap the master key with this AWS KMS key (id, alias/NAME or ARN) instead of a passphrase")
        add_json(p)

    @staticmethod
    def run(given: dict[str, Any]) -> Any:
        from flows.keys import init

        return run_flow(init, pick(given, "repo", "insecure_no_encryption", "kms_key_id"), read_only=True)


def add_kms_key(p: argparse.ArgumentParser, helptext: str) -> None:
    p.add_argument("--kms-key-id", metavar="KEY", help=helptext)


ACTIONS = ("list", "add", "remove", "passwd")


class Key:
    NAME = "key"
    HELP = "the passphrases that open an encrypted repository: list, add, remove KEY_ID, passwd"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("action", choices=ACTIONS, help="list | add | remove KEY_ID | passwd")
        p.add_argument("key_id", nargs="?", metavar="KEY_ID", help="with remove: the key to remove")
        add_repo(p)
        p.add_argument("--new-password-file", metavar="FILE",
                       help="with add and passwd: the new passphrase, the first line of FILE (or set "
                            "QILBEE_NEW_PASSWORD; on a terminal it is asked for twice)")
        add_kms_key(p, "with add: let this AWS KMS key (id, alias/NAME or ARN) open the repository instead of a passphrase")
        add_json(p)

    @staticmethod
    def run(given: dict[str, Any]) -> Any:
        from flows import keys
        from qilbee_backup.crypto import NEW_PASSWORDS, read_password_file
        from qilbee_backup.errors import UsageError

        action = given["action"]
        if (action == "remove") != ("key_id" in given and given["key_id"] is not None):
            raise UsageError("KEY_ID: give it with remove, and only with remove")
        path = given.get("new_password_file")
        if given.get("kms_key_id") is not None and (action != "add" or path is not None):
            raise UsageError("--kms-key-id: only with init and key add, and not with --new-password-file")
        if path is not None:
            if action not in ("add", "passwd"):
                raise UsageError("--new-password-file: only with add and passwd")
            new = read_password_file(path)
            NEW_PASSWORDS.add(lambda: new)
        elif action in ("add", "passwd") and given.get("kms_key_id") is None and sys.stdin.isatty() and sys.stderr.isatty():
            NEW_PASSWORDS.add(_ask_twice, first=False, interactive=True)
        runbook = {"list": keys.key_list, "add": keys.key_add, "remove": keys.key_remove, "passwd": keys.key_passwd}[action]
        extra = {"remove": ("key_id",), "add": ("kms_key_id",)}.get(action, ())
        return run_flow(runbook, pick(given, "repo", *extra), read_only=True)


def _ask_twice() -> str | None:
    import getpass

    from qilbee_backup.errors import UsageError

    first = getpass.getpass("new passphrase: ", stream=sys.stderr)
    if getpass.getpass("new passphrase again: ", stream=sys.stderr) != first:
        raise UsageError("the two passphrases differ; nothing changed")
    return first or None
