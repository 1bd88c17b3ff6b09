"""The RFC 2136 provider: switch a name with a TSIG-signed dynamic update (BIND, PowerDNS, Knot...).

One update message replaces the name's A and AAAA sets at once (delete both, add the
new addresses), sent over TCP to the zone's primary server. Reads ask that same server
directly, never the system resolver, so a switch is checked where it was made and no
cache stands in the way. The TSIG secret lives only inside the keyring: no repr,
message or log of this module holds it.
"""

from __future__ import annotations

import base64
import binascii
import socket
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from qilbee_backup.dns.base import ADDRESS_TYPES, DnsError, DnsProvider, RecordValue, normalize_addresses, split_by_type
from qilbee_backup.errors import UsageError

DEFAULT_PORT = 53
DEFAULT_ALGORITHM = "hmac-sha256"
DEFAULT_TIMEOUT = 5.0
REFUSED_HINT = "check the TSIG key and the zone's allow-update/update-policy"


class Rfc2136Provider(DnsProvider):
    """Switches A/AAAA records in `zone` on the DNS server `server:port` by RFC 2136 dynamic update.

    `key_name`/`key_secret` (base64) sign the update with TSIG (`key_algorithm`, e.g.
    hmac-sha256); without them the update goes unsigned (servers that allow updates by
    address). `timeout` bounds every exchange with the server, in seconds.
    """

    name = "rfc2136"

    def __init__(
        self,
        server: str,
        *,
        zone: str,
        port: int = DEFAULT_PORT,
        key_name: str | None = None,
        key_secret: str | None = None,
        key_algorithm: str = DEFAULT_ALGORITHM,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not server:
            raise UsageError("the rfc2136 provider needs a server address")
        self.server = server
        self.port = _check_port(port)
        self.zone = _parse_name(zone, "zone")
        self.timeout = _check_timeout(timeout)
        if (key_name is None) != (key_secret is None):
            raise UsageError("the rfc2136 provider needs both a TSIG key name and its secret, or neither")
        self.key_name = _parse_name(key_name, "TSIG key name") if key_name is not None else None
        self.key_algorithm = key_algorithm
        self._keyring = _Keyring(self.key_name, key_secret, key_algorithm) if key_secret is not None else None
        self._address: str | None = None

    def __repr__(self) -> str:
        key = f"{self.key_name.to_text()!r} ({self.key_algorithm})" if self.key_name is not None else "None"
        return f"Rfc2136Provider(server={self.server!r}, port={self.port}, zone={self.zone.to_text()!r}, key={key})"

    __str__ = __repr__

    @property
    def address(self) -> str:
        """The server's IP address (dnspython talks to addresses; a host name is resolved once)."""
        if self._address is None:
            try:
                infos = socket.getaddrinfo(self.server, self.port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise DnsError(f"rfc2136: cannot resolve DNS server {self.server!r}: {exc.strerror}") from None
            self._address = infos[0][4][0]
        return self._address

    def _read(self, record: str) -> RecordValue | None:
        name = self._name_in_zone(record)
        addresses: list[str] = []
        ttls: list[int] = []
        for rdtype in ADDRESS_TYPES:
            query = dns.message.make_query(name, rdtype)
            response = self._exchange(query, f"query for {record} {rdtype}")
            rcode = response.rcode()
            if rcode == dns.rcode.NXDOMAIN:
                return None
            if rcode != dns.rcode.NOERROR:
                hint = f" (does it serve zone {self._zone_text()}?)" if rcode == dns.rcode.REFUSED else ""
                raise DnsError(
                    f"rfc2136: {self._where()} answered {dns.rcode.to_text(rcode)} to a query for {record} {rdtype}{hint}"
                )
            rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
            if rrset is not None:
                addresses.extend(rdata.address for rdata in rrset)
                ttls.append(rrset.ttl)
        if not addresses:
            return None
        return RecordValue(tuple(normalize_addresses(addresses)), min(ttls))

    def _write(self, record: str, new: RecordValue | None) -> None:
        name = self._name_in_zone(record)
        keyring = self._keyring.keys if self._keyring is not None else None
        update = dns.update.UpdateMessage(self.zone, keyring=keyring, keyname=self.key_name)
        relative = name.relativize(self.zone)
        for rdtype in ADDRESS_TYPES:
            update.delete(relative, rdtype)
        if new is not None:
            for rdtype, values in split_by_type(new.addresses).items():
                for value in values:
                    update.add(relative, new.ttl if new.ttl is not None else 60, rdtype, value)
        response = self._exchange(update, f"update of {record}")
        rcode = response.rcode()
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            raise DnsError(
                f"rfc2136: the server refused the update of {record} ({dns.rcode.to_text(rcode)}): {REFUSED_HINT}"
            )
        if rcode != dns.rcode.NOERROR:
            raise DnsError(f"rfc2136: the update of {record} failed: {self._where()} answered {dns.rcode.to_text(rcode)}")

    def _exchange(self, message: dns.message.Message, what: str) -> dns.message.Message:
        """Send over TCP (an update must not be lost or truncated) and turn every failure into one DnsError line."""
        try:
            return dns.query.tcp(message, self.address, timeout=self.timeout, port=self.port)
        except dns.tsig.PeerBadTime:
            raise DnsError(f"rfc2136: the server refused the {what} (TSIG BADTIME): check both machines' clocks") from None
        except dns.tsig.PeerError as exc:
            # The server answered with a TSIG error (BADKEY: unknown name or algorithm, BADSIG: wrong secret).
            error = _TSIG_ERRORS.get(type(exc), type(exc).__name__)
            raise DnsError(f"rfc2136: the server refused the {what} (TSIG {error}): {REFUSED_HINT}") from None
        except dns.exception.Timeout:
            raise DnsError(f"rfc2136: no answer from {self._where()} within {self.timeout:g} s to the {what}") from None
        except OSError as exc:
            raise DnsError(f"rfc2136: the {what} to {self._where()} failed: {exc.strerror or type(exc).__name__}") from None
        except dns.exception.DNSException as exc:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            raise DnsError(f"rfc2136: the {what} to {self._where()} failed: {reason}") from None

    def _name_in_zone(self, record: str) -> dns.name.Name:
        name = dns.name.from_text(record)
        if not name.is_subdomain(self.zone):
            raise UsageError(f"{record} is not in zone {self._zone_text()}")
        return name

    def _where(self) -> str:
        return f"{self.server}:{self.port}"

    def _zone_text(self) -> str:
        return self.zone.to_text(omit_final_dot=True)


class _Keyring:
    """The TSIG keyring, the only holder of the secret; its repr names the key, never the secret.

    dnspython's own Key repr prints the secret, so the keyring is kept out of every repr.
    """

    def __init__(self, key_name: dns.name.Name, secret: str, algorithm: str) -> None:
        self._name = key_name.to_text()
        algorithm_name = _ALGORITHMS.get(str(algorithm).lower().rstrip("."))
        if algorithm_name is None:
            raise UsageError(f"unknown TSIG algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise UsageError(f"the secret of TSIG key {self._name!r} is not valid base64") from None  # never echo it
        try:
            self.keys = dns.tsigkeyring.from_text({self._name: (algorithm_name.to_text(), secret)})
        except Exception:  # noqa: BLE001 - dnspython's message might quote the secret; say what, not how
            raise UsageError(f"unusable TSIG key {self._name!r}") from None

    def __repr__(self) -> str:
        return f"<TSIG keyring {self._name!r}, secret hidden>"


# The HMAC algorithms of RFC 8945 by the names BIND and tsig-keygen use; GSS-TSIG needs Kerberos.
_ALGORITHMS = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-md5.sig-alg.reg.int": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
ALGORITHMS = ("hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512")
_TSIG_ERRORS = {dns.tsig.PeerBadKey: "BADKEY", dns.tsig.PeerBadSignature: "BADSIG", dns.tsig.PeerBadTruncation: "BADTRUNC"}


def _parse_name(text: str, what: str) -> dns.name.Name:
    try:
        return dns.name.from_text(str(text).strip())
    except dns.exception.DNSException:
        raise UsageError(f"not a valid {what}: {text!r}") from None


def _check_port(port: Any) -> int:
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise UsageError(f"not a port number: {port!r}") from None
    if not 0 < value < 65536:
        raise UsageError(f"not a port number: {port!r}")
    return value


def _check_timeout(timeout: Any) -> float:
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0:  # also false for NaN
        raise UsageError(f"the rfc2136 timeout must be a positive number of seconds, not {timeout!r}")
    return value
