"""How an S3 destination writes and retries (S3Options), apart from boto3: checking a command's
options must not cost boto3's import when the repository is a directory."""

from __future__ import annotations

from dataclasses import dataclass, fields

from qilbee_backup.errors import UsageError

MiB = 1024 * 1024
_PART_MIN, _PART_MAX = 5 * MiB, 5 * 1024 * MiB  # S3's limits on a part (and on a single PUT)
_SSE_MODES = ("AES256", "aws:kms")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
_MAX_LOCK_DAYS = 36500  # S3 takes retention up to 100 years


@dataclass(frozen=True)
class S3Options:
    """How objects are written and how hard to try. Every field has a working default.

    endpoint_url overrides the standard resolution (tests, odd setups); leave it None to let
    boto3 read AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / the config file.
    """

    storage_class: str | None = None  # e.g. "STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"
    sse: str | None = None  # "AES256" | "aws:kms" | None (the bucket's default)
    sse_kms_key_id: str | None = None  # only with sse="aws:kms"
    max_concurrency: int = 8  # parallel parts of one large transfer
    multipart_threshold: int = 64 * MiB  # files this size or larger go multipart
    multipart_chunksize: int = 16 * MiB  # part size (s3transfer grows it past 10,000 parts)
    max_attempts: int = 5  # total tries per request for transient faults
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    list_page_size: int = 1000  # keys per ListObjectsV2 page (1000 is S3's maximum)
    endpoint_url: str | None = None
    # Object Lock: backups written through this destination are immutable for lock_days days from
    # the backup's time, in GOVERNANCE (removable by whoever holds s3:BypassGovernanceRetention) or
    # COMPLIANCE (removable by nobody) mode. Both or neither; the bucket must have Object Lock on.
    lock_mode: str | None = None  # "GOVERNANCE" | "COMPLIANCE" (any case)
    lock_days: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.lock_mode, str) and self.lock_mode.upper() in LOCK_MODES:
            object.__setattr__(self, "lock_mode", self.lock_mode.upper())  # frozen: set once, normalised
        elif self.lock_mode is not None:
            problems.append(f"lock_mode must be GOVERNANCE or COMPLIANCE, not {self.lock_mode!r}")
        if self.lock_days is not None and (
            not isinstance(self.lock_days, int) or isinstance(self.lock_days, bool) or not 1 <= self.lock_days <= _MAX_LOCK_DAYS
        ):
            problems.append(f"lock_days must be a whole number of days from 1 to {_MAX_LOCK_DAYS}, not {self.lock_days!r}")
        if (self.lock_mode is None) != (self.lock_days is None):
            problems.append("object lock needs both lock_mode and lock_days (or neither)")
        if self.sse not in (None, *_SSE_MODES):
            problems.append(f"sse must be one of {_SSE_MODES} or None, not {self.sse!r}")
        if self.sse_kms_key_id and self.sse != "aws:kms":
            problems.append("sse_kms_key_id needs sse='aws:kms'")
        if self.storage_class is not None and (not isinstance(self.storage_class, str) or not self.storage_class.isupper()):
            problems.append(f"storage_class must be an S3 class name like 'STANDARD_IA', not {self.storage_class!r}")
        for name, low, high in (
            ("max_concurrency", 1, 1000),
            ("multipart_threshold", _PART_MIN, _PART_MAX),
            ("multipart_chunksize", _PART_MIN, _PART_MAX),
            ("max_attempts", 1, 20),
            ("list_page_size", 1, 1000),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                problems.append(f"{name} must be an integer from {low} to {high}, not {value!r}")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive number of seconds, not {value!r}")
        if problems:
            raise UsageError("bad S3 option: " + "; ".join(problems))

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    @property
    def locking(self) -> bool:
        return self.lock_mode is not None and self.lock_days is not None
