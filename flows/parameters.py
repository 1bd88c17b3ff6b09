"""Every flow parameter's type, in one place: the flows' signatures, the Prefect UI form (its JSON
schema: enums as dropdowns, patterns, ranges, required fields) and the CLI (which validates what
the user gave against the same signature before any flow run exists) all take them from here.

A rule JSON schema can express (a choice, a pattern, a range) is written as one, so the Prefect
server refuses a bad form or API call (4xx) before a run exists; a rule it cannot (a URL's
scheme, an IP address's value) is a validator that runs, in the CLI or at the start of the run,
before anything is read or written. No Prefect import here: the CLI's direct path uses this too.

(Prefect takes a flat parameter's description from the flow docstring's `Args:` section; fields of
a model carry their own.)
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Any, Callable, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from qilbee_backup.destinations.url import parse_url
from qilbee_backup.errors import QilbeeBackupError, UsageError
from qilbee_backup.manifest import BACKUP_ID_RE, KIND_RE, SOURCE_NAME_RE
from qilbee_backup.retention import parse_duration


def _checked(check: Callable[[Any], Any]) -> AfterValidator:
    """A validator from an engine check: its one-line UsageError becomes the field's error."""

    def validate(value: Any) -> Any:
        if value is None:
            return value
        try:
            check(value)
        except QilbeeBackupError as e:
            raise ValueError(str(e)) from None
        return value

    return AfterValidator(validate)


def _shaped(regex: re.Pattern[str] | str, what: str, examples: list[str], *, max_length: int = 4096,
            echo: bool = True) -> Any:
    """Text of a given shape. The pattern goes into the JSON schema (the form and the Prefect server
    refuse a mismatch); here a mismatch says what was expected, in words. echo=False: the value is
    not repeated (a URL may carry a password)."""
    whole = re.compile(f"(?:{regex.pattern if isinstance(regex, re.Pattern) else regex})")

    def validate(value: str) -> str:
        if not whole.fullmatch(value):
            shown = f"{value[:60]!r} is " if echo else ""
            raise ValueError(f"{shown}not {what} (e.g. {', '.join(examples)})")
        return value

    return Annotated[str, Field(max_length=max_length, examples=examples,
                                json_schema_extra={"pattern": f"^{whole.pattern}$"}), AfterValidator(validate)]


# -- choices (dropdowns in the form) ----------------------------------------------------------------
Mode = Literal["auto", "online", "offline"]
LockMode = Literal["GOVERNANCE", "COMPLIANCE"]
Sse = Literal["AES256", "aws:kms"]
StorageClass = Literal["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "REDUCED_REDUNDANCY",
                       "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE"]
Provider = Literal["process", "docker"]
Network = Literal["bridge", "host"]
RetrievalTier = Literal["Expedited", "Standard", "Bulk"]
TsigAlgorithm = Literal["hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"]

# -- text with a shape --------------------------------------------------------------------------------
DURATION = r"(?:\d+[ywmdhYWMDH])+"
Duration = Annotated[_shaped(DURATION, "a duration", ["7d", "4w", "12m", "36h"], max_length=32), _checked(parse_duration)]
Grace = Annotated[_shaped(f"0|{DURATION}", "a duration or 0", ["1h", "1d", "0"], max_length=32),
                  _checked(lambda v: None if v == "0" else parse_duration(v))]
Kind = _shaped(KIND_RE, "a series kind: lowercase letters, digits, '-' or '_', at most 32",
               ["daily", "weekly", "monthly", "adhoc"], max_length=32)
SourceName = _shaped(SOURCE_NAME_RE, "a source name: lowercase letters, digits, '.', '_' or '-', at most 64",
                     ["prod", "db.example.com-7474"], max_length=64)
BackupRef = _shaped(f"latest|{BACKUP_ID_RE.pattern}", "a backup id or latest", ["latest", "20261130T020000Z-0a1b2c"],
                    max_length=32)
# Not blank, no surrounding spaces, no control characters.
_PRINTABLE = r"[^\s\x00-\x1f](?:[^\x00-\x1f]*[^\s\x00-\x1f])?"
KeyId = _shaped(r"[0-9a-f]{16}", "a key id: 16 hex digits, as `key list` shows it", ["4b05e9fd1abfe021"], max_length=16)
# AWS's four ways to name a KMS key: key id, alias name, key ARN, alias ARN (multi-Region keys: mrk-...).
_KMS_NAME = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
KmsKeyId = _shaped(rf"{_KMS_NAME}|alias/[A-Za-z0-9/_-]{{1,250}}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{{12}}:"
                   rf"(?:key/{_KMS_NAME}|alias/[A-Za-z0-9/_-]{{1,250}})",
                   "an AWS KMS key: its id, alias/NAME, or its key or alias ARN",
                   ["alias/qilbee-backup", "1234abcd-12ab-34cd-56ef-1234567890ab"], max_length=2048)
Text = _shaped(_PRINTABLE, "a non-empty value without surrounding spaces or control characters", ["qilbeedb --data {data_dir}"])
PathText = _shaped(_PRINTABLE, "a path (not empty, no surrounding spaces or control characters)", ["/var/lib/qilbeedb"])
Name = _shaped(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}", "a name: letters, digits, '.', '_' or '-'", ["qilbeedb"])
EnvName = _shaped(r"[A-Za-z_][A-Za-z0-9_]{0,127}", "an environment variable's name", ["QILBEE_API_KEY"])
RepoUrl = Annotated[_shaped(_PRINTABLE, "a repository URL", ["/var/backups/qilbee", "s3://bucket/qilbee"], max_length=2048,
                            echo=False),
                    _checked(parse_url)]
# A fully qualified DNS name (at least two labels).
FQDN = r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?"
Fqdn = _shaped(FQDN, "a fully qualified DNS name", ["qilbeedb.example.com"], max_length=254)
Host = _shaped(f"{FQDN}|[0-9A-Fa-f:.]+|localhost", "a host name or address", ["10.0.0.53", "ns1.example.com"], max_length=254)


def check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise UsageError(f"{value[:60]!r} is not an IP address") from None
    return value


IpAddress = Annotated[_shaped(r"[0-9A-Fa-f:.]{2,45}", "an IP address", ["10.0.0.7", "fd00::7"], max_length=45),
                      _checked(check_ip)]


def check_source_url(url: str) -> str:
    """A QilbeeDB server's URL: http(s), a host, a port that exists, and no secret in it (the key goes
    by --api-key or QILBEE_API_KEY: a URL is shown, logged and stored). The URL is not echoed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UsageError("bad source URL: its port is not a number from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("bad source URL: use http://HOST:PORT or https://HOST:PORT")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise UsageError("the source URL must not carry credentials or a query (user:password@, ?api_key=): "
                         "give the API key with --api-key, QILBEE_API_KEY or --api-key-secret")
    if port == 0:
        raise UsageError("bad source URL: its port is not a number from 1 to 65535")
    return url


# No '@', '?' or '#' anywhere: the form refuses a URL with credentials before it is ever stored.
SourceUrl = Annotated[_shaped(r"https?://[A-Za-z0-9.\-\[\]:]+(?:/[^\s?#@]*)?",
                              "a server URL without credentials or query", ["http://127.0.0.1:7474"], max_length=2048,
                              echo=False),
                      _checked(check_source_url)]

# -- numbers with a range -----------------------------------------------------------------------------
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=0, le=100_000)]
LockDays = Annotated[int, Field(ge=1, le=36500)]
RetrievalDays = Annotated[int, Field(ge=1, le=3650)]
Ttl = Annotated[int, Field(ge=1, le=604800)]  # a week: DR records want short TTLs anyway
Seconds = Annotated[float, Field(gt=0, le=7 * 86400)]
WaitSeconds = Annotated[float, Field(ge=0, le=7 * 86400)]


class Retention(BaseModel):
    """Which backups of a series to keep (restic's `forget` rules, calendar buckets in UTC).

    The newest backup of a series is always kept; with no rule set, nothing is removed."""

    model_config = ConfigDict(extra="forbid")

    keep_within: Duration | None = Field(
        None, description="Keep every backup younger than this, counted back from the newest: 7d, 4w, 12m, 1y.")
    keep_last: Count = Field(0, description="Keep the newest N backups. 0: off.")
    keep_hourly: Count = Field(0, description="Keep the newest backup of each of the last N hours that have one. 0: off.")
    keep_daily: Count = Field(0, description="Keep the newest backup of each of the last N days that have one. 0: off.")
    keep_weekly: Count = Field(0, description="Keep the newest backup of each of the last N ISO weeks that have one. 0: off.")
    keep_monthly: Count = Field(0, description="Keep the newest backup of each of the last N months that have one. 0: off.")
    keep_yearly: Count = Field(0, description="Keep the newest backup of each of the last N years that have one. 0: off.")

    def rules(self) -> dict[str, Any]:
        """The rules that are set, as the engine's retention takes them."""
        return {k: v for k, v in self.model_dump().items() if v not in (None, 0)}


def retention_rules(retention: Retention | dict | None) -> dict[str, Any]:
    """Rules from a model, a plain mapping (called without Prefect's validation) or nothing."""
    if retention is None:
        return {}
    if isinstance(retention, Retention):
        return retention.rules()
    return Retention.model_validate(retention).rules()


# -- disaster recovery and drills: the runbook's parts as models ------------------------------------


class Instance(BaseModel):
    """Where the recovered database runs."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider = Field("process", title="Provider", description="process: a server command on this machine; docker: a container.")
    server_cmd: Text | None = Field(
        None, description="process: the server command, with {data_dir}, {port} and {host}; empty runs the bundled "
                          "emulator (give the real qilbeedb binary here).")
    image: Text = Field("qilbeedb/qilbeedb:latest", title="Image", description="docker: the server image.")
    network: Network = Field("bridge", title="Network", description="docker: bridge (a published port) or host networking.")
    container_command: Text | None = Field(
        None, description="docker: the container's arguments, with {port}, {host} and {data_dir}.")
    server_env: Annotated[list[EnvName], Field(max_length=64)] = Field(
        [], description="Names of environment variables the server gets from the worker (it gets no others: no "
                        "cloud or API secrets leak into it). Names only; the values never become parameters.")
    port: Port | None = Field(None, title="Port", description="The new instance's port; empty picks a free one.")
    health_timeout: Seconds = Field(120.0, title="Health timeout (seconds)", description="Seconds to wait for the new instance to answer /health.")

    def provisioner_options(self) -> dict[str, Any]:
        if self.provider == "process":
            return {"server_cmd": self.server_cmd, "health_timeout": self.health_timeout, "pass_env": self.server_env}
        return {"image": self.image, "network": self.network, "command": self.container_command,
                "health_timeout": self.health_timeout, "pass_env": self.server_env}


class Targets(BaseModel):
    """The recovery objectives the run is measured against (the guide: RTO < 1 h, RPO < 24 h)."""

    model_config = ConfigDict(extra="forbid")

    rto_s: Seconds = Field(3600.0, title="RTO target (seconds)", description="Recovery time objective in seconds: trigger to DNS switched.")
    rpo_s: Seconds = Field(86400.0, title="RPO target (seconds)", description="Recovery point objective in seconds: the restored backup's age.")


_PROVIDER_OPTIONS = {"hosts": ("hosts_file",), "route53": ("zone_id", "zone_name"),
                     "rfc2136": ("server", "port", "zone", "tsig_key_name", "tsig_algorithm", "tsig_secret_env")}


class DnsSwitch(BaseModel):
    """Point a DNS name at the new instance: in a hosts file, an AWS Route 53 zone, or by an RFC 2136
    dynamic update (BIND, Knot, PowerDNS...). One model with a provider choice (the UI form shows a
    dropdown); the options of the other providers stay empty."""

    model_config = ConfigDict(extra="forbid", title="DNS switch",
                              json_schema_extra={"allOf": [{"if": {"properties": {"provider": {"const": "rfc2136"}}},
                                                            "then": {"properties": {"server": {"type": "string"},
                                                                                    "zone": {"type": "string"}},
                                                                     "required": ["server", "zone"]}}]})

    provider: Literal["hosts", "route53", "rfc2136"] = Field("hosts", title="Provider", description=(
        "hosts: a hosts-format file; route53: AWS Route 53; rfc2136: a dynamic update to the zone's primary server."))
    record: Fqdn = Field(title="Record", description="The DNS name to point at the new instance, e.g. qilbeedb.example.com.")
    address: IpAddress = Field("127.0.0.1", title="Address", description="The address the record gets: the new instance's host.")
    ttl: Ttl = Field(60, title="TTL (seconds)", description="The record's TTL in seconds.")
    hosts_file: PathText | None = Field(None, title="Hosts file", description="hosts: the file (default /etc/hosts).")
    zone_id: _shaped(r"(?:/hostedzone/)?[A-Z0-9]{1,32}", "a hosted zone id", ["Z0123456789ABC"]) | None = Field(
        None, title="Route 53 zone id", description="route53: the hosted zone's id (default: found from the record).")
    zone_name: Fqdn | None = Field(None, title="Route 53 zone name", description="route53: the hosted zone's name, to find it by.")
    server: Host | None = Field(None, title="DNS server", description="rfc2136: the primary server's address (required).")
    port: Port = Field(53, title="DNS server port", description="rfc2136: the primary server's port.")
    zone: Fqdn | None = Field(None, title="Zone", description="rfc2136: the zone to update (required).")
    tsig_key_name: _shaped(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}", "a TSIG key name", ["qilbee-dr."]) | None = Field(
        None, title="TSIG key name",
        description="rfc2136: the TSIG key's name (its secret comes from the variable below, never a parameter).")
    tsig_algorithm: TsigAlgorithm = Field("hmac-sha256", title="TSIG algorithm", description="rfc2136: the TSIG algorithm.")
    tsig_secret_env: EnvName = Field("QILBEE_TSIG_SECRET", title="TSIG secret variable",
                                     description="rfc2136: the environment variable holding the TSIG secret.")

    @model_validator(mode="after")
    def _options_fit_the_provider(self) -> "DnsSwitch":
        if self.provider == "rfc2136" and (self.server is None or self.zone is None):
            raise ValueError("rfc2136 needs server and zone (--dns-server, --dns-zone)")
        defaults = {name: field.default for name, field in type(self).model_fields.items()}
        for provider, names in _PROVIDER_OPTIONS.items():
            if provider != self.provider:
                stray = [n for n in names if getattr(self, n) != defaults[n]]
                if stray:
                    raise ValueError(f"{', '.join(stray)} is not used with the {self.provider} provider")
        return self

    def options(self) -> dict[str, Any]:
        """The DNS provider's own options."""
        if self.provider == "hosts":
            return {"path": self.hosts_file}
        if self.provider == "route53":
            return {"zone_id": self.zone_id, "zone_name": self.zone_name}
        return {"server": self.server, "port": self.port, "zone": self.zone, "key_name": self.tsig_key_name,
                "key_algorithm": self.tsig_algorithm}


# -- the operator's view: status and its metrics ---------------------------------------------------


def _directory_is_writable(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a directory")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{folder} is not writable here (the file is written beside its final name, then renamed)")
    return path


# node_exporter's textfile collector reads only *.prom; the file is replaced whole (written beside, renamed).
PromFile = Annotated[_shaped(r"[^\x00-\x1f]*\.prom", "a file name ending in .prom (the only ones node_exporter reads)",
                             ["/var/lib/prometheus/node-exporter/qilbee_backup.prom"]),
                     AfterValidator(_directory_is_writable)]


def listen_address(address: str) -> tuple[str, int]:
    """'127.0.0.1:9108', '[::1]:9108' or 'localhost:9108' -> (host, port)."""
    host, _, port = address.rpartition(":")
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {port} is not from 1 to 65535")
    return host.strip("[]"), int(port)


def _listenable(address: str) -> str:
    listen_address(address)
    return address


ListenAddress = Annotated[_shaped(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}", "HOST:PORT to listen on",
                                  ["127.0.0.1:9108", "[::1]:9108"], max_length=300),
                          AfterValidator(_listenable)]
Repos = Annotated[list[RepoUrl], Field(min_length=1, max_length=16)]
