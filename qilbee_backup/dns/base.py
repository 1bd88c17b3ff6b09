"""The DNS provider interface: point a name at new addresses, remember the old ones, roll back.

Disaster recovery ends by switching a DNS name (A/AAAA records) to the freshly
provisioned instance. Every provider (a hosts file, Route 53, an RFC 2136 server)
is one small class behind this interface, and one shared test suite runs against
each (tests/integration/test_dns_providers.py).

A provider implements two primitives, `_read` and `_write`; the base class does
the rest the same way for all of them: normalising names and addresses,
recording the previous value in a `DnsChange`, reading the record back after a
write, and rolling back.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from qilbee_backup.errors import QilbeeBackupError, UsageError

DEFAULT_TTL = 60
MAX_TTL = 2_147_483_647  # RFC 2181 §8: a TTL is an unsigned 31-bit number
ADDRESS_TYPES = ("A", "AAAA")

# Letters, digits, hyphen and underscore (service labels such as _dmarc); no wildcard.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


class DnsError(QilbeeBackupError):
    """A DNS provider could not read or change a record (server refused, unreachable, zone missing)."""


def normalize_record(record: str) -> str:
    """The record's name in one canonical form: lower case, no trailing dot ("db.example.com").

    Accepts the name with or without its trailing dot; anything that is not a valid host
    name (empty, a wildcard, a bad label, too long) is a UsageError.
    """
    if not isinstance(record, str):
        raise UsageError(f"a DNS record name must be text, not {type(record).__name__}")
    name = record.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UsageError(f"not a valid DNS record name: {record!r}")
    return name


def normalize_addresses(addresses: Iterable[str]) -> list[str]:
    """The addresses parsed, deduplicated and sorted: IPv4 first, then IPv6, each in numeric order.

    One order for every provider makes `current()` and `DnsChange` comparable with `==`.
    A host name, a scoped IPv6 address or an empty list is a UsageError.
    """
    if isinstance(addresses, str):  # a lone string would otherwise be read character by character
        addresses = [addresses]
    parsed: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for text in addresses:
        try:
            address = ipaddress.ip_address(str(text).strip())
        except ValueError:
            raise UsageError(f"not an IP address: {text!r} (a DNS switch takes IPv4 or IPv6 addresses)") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise UsageError(f"a scoped IPv6 address cannot go in DNS: {text!r}")
        parsed.add(address)
    if not parsed:
        raise UsageError("a DNS switch needs at least one address")
    return [str(a) for a in sorted(parsed, key=lambda a: (a.version, int(a)))]


def record_type(address: str) -> str:
    """ "A" for an IPv4 address, "AAAA" for an IPv6 one."""
    return "A" if ipaddress.ip_address(address).version == 4 else "AAAA"


def split_by_type(addresses: Iterable[str]) -> dict[str, list[str]]:
    """{"A": [...], "AAAA": [...]}: the addresses grouped by the record type that holds them."""
    grouped: dict[str, list[str]] = {rdtype: [] for rdtype in ADDRESS_TYPES}
    for address in addresses:
        grouped[record_type(address)].append(address)
    return grouped


@dataclass(frozen=True)
class RecordValue:
    """What a name holds now: its addresses (normalised) and their TTL (None where there is no TTL: hosts)."""

    addresses: tuple[str, ...]
    ttl: int | None = None


@dataclass
class DnsChange:
    """One switch: `record` went from `old` (None: there was no record) to `new`, with `ttl`.

    `old_ttl` is the TTL the old record had, so a rollback restores it too (None when there
    was none or the provider has no TTLs). `to_dict()` is JSON-able; `from_dict()` reads it
    back, so a later run can roll the switch back.
    """

    provider: str
    record: str
    old: list[str] | None
    new: list[str]
    ttl: int
    old_ttl: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DnsChange:
        try:
            old = data["old"]
            old_ttl = data.get("old_ttl")
            return cls(
                provider=str(data["provider"]),
                record=normalize_record(data["record"]),
                old=normalize_addresses(old) if old is not None else None,
                new=normalize_addresses(data["new"]),
                ttl=int(data["ttl"]),
                old_ttl=int(old_ttl) if old_ttl is not None else None,
            )
        except KeyError as exc:
            raise UsageError(f"not a DNS change record: it has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise UsageError(f"not a DNS change record: {exc}") from None


class DnsProvider(ABC):
    """Reads and switches the A/AAAA records of a name at one place (`name`: "hosts", "route53", "rfc2136")."""

    name: ClassVar[str]

    # -- what each provider implements ------------------------------------------------------

    @abstractmethod
    def _read(self, record: str) -> RecordValue | None:
        """The A and AAAA values of `record` (normalised name), or None when it has neither."""

    @abstractmethod
    def _write(self, record: str, new: RecordValue | None) -> None:
        """Make `record` hold exactly `new`: its A and AAAA records replaced (None: removed)."""

    # -- the interface, the same for every provider ----------------------------------------

    def current(self, record: str) -> list[str] | None:
        """The record's A and AAAA values now (IPv4 first, sorted), or None when there is no such record."""
        value = self._read(normalize_record(record))
        return list(value.addresses) if value is not None else None

    def switch(self, record: str, addresses: Iterable[str], ttl: int = DEFAULT_TTL) -> DnsChange:
        """Set the record to exactly `addresses` (IPv4 → A, IPv6 → AAAA) and return the change made.

        The change records the previous value so `rollback(change)` can put it back.
        The record is read back after the write; a server that accepted the change but
        does not serve it is a DnsError.
        """
        name = normalize_record(record)
        new = normalize_addresses(addresses)
        ttl = _check_ttl(ttl)
        old = self._read(name)
        self._write(name, RecordValue(tuple(new), ttl))
        self._check_holds(name, new)
        return DnsChange(
            provider=self.name,
            record=name,
            old=list(old.addresses) if old is not None else None,
            new=new,
            ttl=ttl,
            old_ttl=old.ttl if old is not None else None,
        )

    def rollback(self, change: DnsChange) -> None:
        """Put back the values the record had before `change`; remove the record if it had none."""
        if change.provider != self.name:
            raise UsageError(f"cannot roll back a {change.provider} change with the {self.name} provider")
        name = normalize_record(change.record)
        if change.old is None:
            self._write(name, None)
            self._check_holds(name, None)
            return
        old = normalize_addresses(change.old)
        self._write(name, RecordValue(tuple(old), change.old_ttl if change.old_ttl is not None else change.ttl))
        self._check_holds(name, old)

    def close(self) -> None:
        """Release connections or clients; the default has none."""

    def __enter__(self) -> DnsProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_holds(self, record: str, expected: list[str] | None) -> None:
        value = self._read(record)
        actual = list(value.addresses) if value is not None else None
        if actual != expected:
            raise DnsError(
                f"{self.name}: {record} holds {_describe(actual)} after the change, expected {_describe(expected)}"
            )


def _check_ttl(ttl: int) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
        raise UsageError(f"a DNS TTL is a whole number of seconds from 0 to {MAX_TTL}, not {ttl!r}")
    return ttl


def _describe(addresses: list[str] | None) -> str:
    return "no record" if addresses is None else ", ".join(addresses)
