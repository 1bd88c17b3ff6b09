"""The manifest: one JSON document per backup, the commit point of the repository format.

It names every file of the snapshot (relative path, size, mode, SHA-256 of the content, stored size
of its zstd blob), where the data came from and the database's own figures at backup time. Paths
are validated here so a restore can trust them (and the restorer re-checks anyway).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import IntegrityError, UsageError

FORMAT_VERSION = 2  # 2: the source carries a name (its series); 1 is still read

# A manifest names paths a restore creates: bound them so a hostile one cannot exhaust the stack,
# the filesystem's limits or memory (a RocksDB data directory is a flat tree of short names).
MAX_PATH_DEPTH = 64
MAX_NAME_BYTES = 255  # NAME_MAX on Linux filesystems
MAX_PATH_BYTES = 4096  # PATH_MAX

BACKUP_ID_RE = re.compile(r"(\d{8}T\d{6}Z)-([0-9a-f]{6})")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
KIND_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SOURCE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def new_backup_id(now: datetime | None = None) -> str:
    """'YYYYMMDDTHHMMSSZ-<6 hex>': UTC time then randomness, so ids sort by time and never collide in practice."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("new_backup_id needs a timezone-aware time")
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def parse_backup_id(backup_id: str) -> datetime:
    """The UTC time a backup id encodes; UsageError (exit 2) for anything that is not an id."""
    if not isinstance(backup_id, str) or not BACKUP_ID_RE.fullmatch(backup_id):
        raise UsageError(f"malformed backup id {backup_id!r}: expected YYYYMMDDTHHMMSSZ-xxxxxx (or 'latest')")
    try:
        return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise UsageError(f"malformed backup id {backup_id!r}: not a real date and time") from None


def check_backup_ref(ref: str) -> str:
    """A backup named by the operator: 'latest' or an id (UsageError, exit 2, for anything else:
    an empty string must not quietly mean 'the newest')."""
    if ref != "latest":
        parse_backup_id(ref)
    return ref


def check_relative_path(path: str) -> str:
    """A path a restore may write under its target: relative POSIX, no '..', '.', empty part or backslash."""
    if not path or "\\" in path or "\x00" in path:
        raise ValueError(f"unsafe file path {path!r}")
    if path.startswith("/"):
        raise ValueError(f"file path {path!r} is absolute")
    parts = path.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise ValueError(f"file path {path[:60]!r}... is {len(parts)} levels deep (at most {MAX_PATH_DEPTH})")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ValueError(f"file path {path[:60]!r}... is longer than {MAX_PATH_BYTES} bytes")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"file path {path!r} has an empty, '.' or '..' part")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        raise ValueError(f"file path {path[:60]!r}... has a name longer than {MAX_NAME_BYTES} bytes")
    return str(PurePosixPath(path))


def check_kind(kind: str) -> str:
    """A series kind: lowercase letters, digits, '-' or '_', at most 32 (daily, weekly, monthly, adhoc)."""
    if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
        raise UsageError(f"bad kind {kind!r}: lowercase letters, digits, '-' or '_' (e.g. daily, weekly, monthly, adhoc)")
    return kind


def check_source_name(name: str) -> str:
    """A source's name (its backups' series): lowercase letters, digits, '.', '_' or '-', at most 64."""
    if not isinstance(name, str) or not SOURCE_NAME_RE.fullmatch(name):
        raise UsageError(f"bad source name {name!r}: lowercase letters, digits, '.', '_' or '-' (at most 64), "
                         "starting with a letter or digit")
    return name


def default_source_name(url: str) -> str:
    """The name a source gets when none is given: its host and port ("db.example.com-7474").

    Backups made before names existed get the same name from their recorded URL, so they stay in
    the series of the backups that follow them."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        parts, port = None, None
    host = (parts.hostname if parts else None) or "source"
    name = re.sub(r"[^a-z0-9._-]+", "-", f"{host}-{port}" if port else host).strip("-._")
    return name[:64].rstrip("-._") or "source"


def redact_url(url: str) -> str:
    """The URL without user or password: a manifest must never hold a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str  # relative POSIX path inside the snapshot
    size: int = Field(ge=0)
    mode: int = Field(ge=0, le=0o7777)  # permission bits
    sha256: str  # of the uncompressed content; also the blob's key
    stored_size: int | None = Field(default=None, ge=0)  # bytes of the zstd blob in the repository

    @field_validator("path")
    @classmethod
    def _path_is_safe(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("sha256")
    @classmethod
    def _sha_is_hex(cls, value: str) -> str:
        if not SHA256_RE.fullmatch(value):
            raise ValueError(f"sha256 {value!r} is not 64 lowercase hex digits")
        return value


class SourceInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    server_version: str | None = None
    mode: Literal["online", "offline"]
    snapshot_id: str | None = None
    container: str | None = None
    name: str | None = None  # the source's stable name (format 2); None in format 1 manifests

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        return redact_url(value)

    @field_validator("name")
    @classmethod
    def _name_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and not SOURCE_NAME_RE.fullmatch(value):
            raise ValueError(f"source name {value!r} must be lowercase letters, digits, '.', '_' or '-' (at most 64)")
        return value

    @property
    def series_name(self) -> str:
        """The name this source's backups are grouped by: its own, else derived from its URL."""
        return self.name or default_source_name(self.url)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1, 2] = FORMAT_VERSION
    backup_id: str
    kind: str
    created_at: datetime
    source: SourceInfo
    stats: dict[str, Any] = Field(default_factory=dict)
    files: list[FileEntry]
    bytes_total: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _fill_total(cls, data: Any) -> Any:
        if isinstance(data, dict) and "bytes_total" not in data and isinstance(data.get("files"), list):
            data = dict(data)
            data["bytes_total"] = sum(
                f.size if isinstance(f, FileEntry) else int(f.get("size", 0)) for f in data["files"]
            )
        return data

    @field_validator("backup_id")
    @classmethod
    def _id_is_valid(cls, value: str) -> str:
        if not BACKUP_ID_RE.fullmatch(value):
            raise ValueError(f"malformed backup id {value!r}")
        return value

    @field_validator("kind")
    @classmethod
    def _kind_is_a_name(cls, value: str) -> str:
        if not KIND_RE.fullmatch(value):
            raise ValueError(f"kind {value!r} must be lowercase letters, digits, '-' or '_' (at most 32)")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must carry a timezone")
        return value.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        seen: set[str] = set()
        for entry in self.files:
            if entry.path in seen:
                raise ValueError(f"file path {entry.path!r} appears twice")
            seen.add(entry.path)
        total = sum(f.size for f in self.files)
        if total != self.bytes_total:
            raise ValueError(f"bytes_total {self.bytes_total} differs from the sum of file sizes {total}")
        return self

    @property
    def series(self) -> tuple[str, str]:
        """(source name, kind): retention and 'latest' work within one series, never across databases."""
        return self.source.series_name, self.kind

    def blob_shas(self) -> set[str]:
        return {f.sha256 for f in self.files}

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, *, origin: str = "manifest") -> "Manifest":
        """Parse a stored manifest; IntegrityError (one line) when it is not a valid one."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first.get("loc") == ("format_version",):
                raise IntegrityError(f"{origin} has format version {first.get('input')!r}; this tool reads versions 1 to {FORMAT_VERSION}") from None
            where = ".".join(str(p) for p in first.get("loc", ())) or "document"
            raise IntegrityError(f"{origin} is not a valid manifest: {where}: {first.get('msg', 'invalid')}") from None
