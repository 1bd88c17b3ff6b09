"""The hosts-file provider: switch a name by editing a file in /etc/hosts syntax.

The embedded default: it needs no server, so a single machine (or a demo) can do a
whole disaster recovery. Each line is `address name [aliases...]`, `#` starts a comment.
Switching a name takes it off every line that has it (a line left with no names goes,
comments and every other line stay byte for byte) and appends one line per address.
The file is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import stat
import tempfile
from contextlib import suppress
from pathlib import Path

from qilbee_backup.dns.base import DnsError, DnsProvider, RecordValue, normalize_addresses
from qilbee_backup.fsutil import fsync_directory

DEFAULT_HOSTS_PATH = "/etc/hosts"
_NEW_FILE_MODE = 0o644  # what /etc/hosts has on every common system
_TOKEN = re.compile(r"\S+")


class HostsFileProvider(DnsProvider):
    """Switches names in a hosts-format file (`path`, /etc/hosts by default); a missing file is created."""

    name = "hosts"

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_HOSTS_PATH) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"HostsFileProvider(path={str(self.path)!r})"

    def _read(self, record: str) -> RecordValue | None:
        found: list[str] = []
        for line in self._lines():
            address, names = _entry(line)
            if address is not None and record in names:
                found.append(address)
        return RecordValue(tuple(normalize_addresses(found))) if found else None

    def _write(self, record: str, new: RecordValue | None) -> None:
        lines = self._lines()
        kept: list[str] = []
        for line in lines:
            edited = _without_name(line, record)
            if edited is not None:
                kept.append(edited)
        if kept and not kept[-1].endswith("\n"):
            kept[-1] += "\n"  # the file's last line had no newline: our lines start on their own
        for address in new.addresses if new is not None else ():
            kept.append(f"{address}\t{record}\n")
        if kept != lines:  # nothing to change (a rollback of a name not there): leave the file alone
            self._replace("".join(kept))

    def _lines(self) -> list[str]:
        try:
            # newline="" keeps "\r\n" and friends as they are, so untouched lines stay byte for byte.
            with open(self.path, encoding="utf-8", errors="surrogateescape", newline="") as file:
                return file.readlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise DnsError(f"cannot read hosts file {self.path}: {exc.strerror or exc}") from None

    def _replace(self, text: str) -> None:
        """Write `text` to a temporary file beside the hosts file, fsync it, rename it over the original."""
        # Through a symlink to the real file: renaming over the link would turn it into a copy.
        target = Path(os.path.realpath(self.path))
        directory = target.parent
        try:
            existing: os.stat_result | None = target.stat()
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise DnsError(f"cannot stat hosts file {self.path}: {exc.strerror or exc}") from None
        temp_path: str | None = None
        try:
            fd, temp_path = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as file:
                file.write(text)
                file.flush()
                _keep_mode_and_owner(file.fileno(), existing)
                os.fsync(file.fileno())
            os.replace(temp_path, target)
            temp_path = None
            with suppress(OSError):  # some filesystems refuse to open a directory, which is fine
                fsync_directory(directory)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                # A bind-mounted file (Docker's /etc/hosts) cannot be renamed over.
                raise DnsError(f"cannot replace hosts file {self.path}: it is a mount point") from None
            raise DnsError(f"cannot write hosts file {self.path}: {exc.strerror or exc}") from None
        finally:
            if temp_path is not None:
                try:
                    os.unlink(temp_path)
                except OSError:
                    pass


def _split_comment(line: str) -> tuple[str, str]:
    """(entry part, comment part including its '#' and the line ending)."""
    cut = line.find("#")
    if cut < 0:
        body = line.rstrip("\r\n")
        return body, line[len(body) :]
    return line[:cut], line[cut:]


def _entry(line: str) -> tuple[str | None, list[str]]:
    """(normalised address, lower-case names) of a hosts line; (None, []) for comments, blanks and junk."""
    tokens = _split_comment(line)[0].split()
    if len(tokens) < 2:
        return None, []
    try:
        address = ipaddress.ip_address(tokens[0])
    except ValueError:
        return None, []  # resolvers skip lines they cannot parse; so do we
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return None, []  # a link-local address with its interface: not something DNS can hold, left alone
    return str(address), [token.lower().rstrip(".") for token in tokens[1:]]


def _without_name(line: str, record: str) -> str | None:
    """The line with `record` taken off its names; None when no name is left; the line itself otherwise."""
    address, names = _entry(line)
    if address is None or record not in names:
        return line
    if all(name == record for name in names):
        return None
    body, comment = _split_comment(line)
    tokens = list(_TOKEN.finditer(body))
    # Rebuild from the original text, dropping each matching name with the blank before it,
    # so the address, other names, spacing and comment are kept as they were.
    pieces: list[str] = []
    position = 0
    for previous, token in zip(tokens, tokens[1:]):
        if token.group().lower().rstrip(".") == record:
            pieces.append(body[position : previous.end()])
            position = token.end()
    pieces.append(body[position:])
    return "".join(pieces) + comment


def _keep_mode_and_owner(fd: int, existing: os.stat_result | None) -> None:
    """Give the new file the old one's mode (and owner, where we may): mkstemp makes it 0600."""
    if existing is None:
        os.fchmod(fd, _NEW_FILE_MODE)
        return
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))
    try:
        os.fchown(fd, existing.st_uid, existing.st_gid)
    except PermissionError:
        pass  # only root may give a file away; an unprivileged user edits a file it owns anyway


