"""A repository in an S3 bucket, under an optional prefix (boto3).

Endpoint, region and credentials come from boto3's standard resolution
(AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
AWS_PROFILE, ~/.aws/config, instance roles...): this module never reads a secret.

Transient faults (throttling, 5xx, dropped connections) are retried by botocore's
"standard" retry mode; what remains is a one-line DestinationError naming the bucket,
key and S3 error code (never credentials), NotFound for a missing key, IntegrityError
for a checksum the store or the download check rejects.

S3 makes each PUT atomic, and a multipart upload appears only when completed (s3transfer
aborts it on failure), so a failed put leaves no object.

Object Lock (S3Options.lock_mode / lock_days): writes given a ``retain_until`` are stored locked
(WORM) in that mode; the bucket must have been created with Object Lock. Such a bucket is always
versioned, where a plain DeleteObject only hides the object behind a delete marker (and "succeeds"
even while it is locked). So on a lock-enabled bucket ``remove`` refuses a locked object
(ObjectLocked, the object stays) and otherwise deletes every version of the key, freeing the space.

Archive storage classes: GLACIER (Flexible Retrieval) and DEEP_ARCHIVE objects cannot be read until a
retrieval (RestoreObject) has made a temporary readable copy; so can INTELLIGENT_TIERING objects that
moved to its archive tiers (HeadObject's ArchiveStatus). GLACIER_IR and every other class read at once.
HeadObject tells where an object stands (``object_state``): its StorageClass, and a Restore header,
'ongoing-request="true"' while a retrieval runs and 'ongoing-request="false", expiry-date="..."' once
the copy is readable (until that date). ``start_retrieval`` sends the RestoreObject.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import logging
import os
import re
import threading
import time
from contextlib import contextmanager

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import boto3
from boto3.exceptions import Boto3Error, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    FlexibleChecksumError,
    NoCredentialsError,
    PartialCredentialsError,
)

from qilbee_backup.destinations.base import ColdState, Destination, ObjectInfo
from qilbee_backup.destinations.s3_options import LOCK_MODES, MiB, S3Options  # noqa: F401 - S3Options re-exported
from qilbee_backup.destinations.url import check_key, check_prefix, check_sha256_hex, redact_url
from qilbee_backup.errors import DestinationError, IntegrityError, NotFound, ObjectLocked, QilbeeBackupError, UsageError

log = logging.getLogger(__name__)

_FOREVER = datetime.max.replace(tzinfo=timezone.utc)  # what locked_until says for a legal hold
_NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")
_CHECKSUM_CODES = ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch")
# Bodyless answers (HEAD) carry only the HTTP status as their code.
_STATUS_NAMES = {"400": "BadRequest", "403": "AccessDenied", "404": "NotFound", "412": "PreconditionFailed"}
RETRIEVAL_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})  # read only after a RestoreObject
_RESTORE_HEADER = re.compile(r'ongoing-request="(true|false)"(?:\s*,\s*expiry-date="([^"]*)")?')


class S3Destination(Destination):
    storage_classes = True

    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.options = options or S3Options()
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._bucket_seen = False  # set once HeadBucket proved the bucket exists
        self._lock_enabled: bool | None = None  # the bucket's Object Lock state, asked once
        self._lock_question = threading.Lock()
        opts = self.options
        config = Config(
            # total_max_attempts counts the first try; botocore's "max_attempts" key would count retries.
            retries={"mode": "standard", "total_max_attempts": opts.max_attempts},
            # Room for every part thread of a few concurrent transfers, so connections are reused.
            max_pool_connections=max(16, 2 * opts.max_concurrency),
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
        )
        with self._errors("connect", None):
            # A session per destination: boto3 sessions are not thread-safe, the client made
            # from it is, and every thread shares this one client.
            self._client = boto3.session.Session().client("s3", endpoint_url=opts.endpoint_url, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=opts.multipart_threshold,
            multipart_chunksize=opts.multipart_chunksize,
            max_concurrency=opts.max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        if opts.locking and not self.object_lock_enabled():
            # Checked at open, before anything is written: a backup believed immutable must be.
            raise DestinationError(
                f"{self.url}: bucket {self.bucket!r} has no Object Lock enabled; "
                "create it with object lock or drop --lock-days"
            )

    def __repr__(self) -> str:
        return f"S3Destination(url={self.url!r})"

    # -- writing --------------------------------------------------------------------

    @property
    def lock_period(self) -> timedelta | None:
        return timedelta(days=self.options.lock_days) if self.options.locking else None

    def put_file(self, key: str, path: Path, *, sha256: str | None = None, retain_until: datetime | None = None) -> None:
        expected = check_sha256_hex(sha256)
        full_key = self._full_key(key)
        lock_args = self._lock_args(retain_until)
        size = os.stat(path).st_size  # a missing source is the caller's OSError, as for files
        if size < self.options.multipart_threshold:
            # An error reading the source comes out as the OSError it is (botocore reads the
            # body to hash and sign it, and urllib3 hands read errors back untouched).
            with open(path, "rb") as source, self._errors("PutObject", key):
                self._client.put_object(Bucket=self.bucket, Key=full_key, Body=source, **self._put_args(expected), **lock_args)
        else:
            # Parallel multipart upload. Each part carries its SHA-256, which S3 checks; a
            # whole-object SHA-256 cannot be given for multipart, so `sha256` is not sent here.
            with self._errors("upload", key):
                self._client.upload_file(
                    str(path), self.bucket, full_key, ExtraArgs={**self._put_args(None), **lock_args}, Config=self._transfer
                )
            if retain_until is not None:
                # S3 locks a multipart upload from CreateMultipartUpload's headers; some stores
                # (moto among them) ignore those, so make sure the lock is really there.
                self.extend_lock(key, retain_until)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False, retain_until: datetime | None = None) -> bool:
        data = bytes(data)
        args = {**self._put_args(hashlib.sha256(data).hexdigest()), **self._lock_args(retain_until)}
        if if_absent:
            args["IfNoneMatch"] = "*"  # S3 conditional write: refused with 412 if the key exists
        for attempt in range(3):
            try:
                with self._errors("PutObject", key, passthrough=("PreconditionFailed", "ConditionalRequestConflict")):
                    self._client.put_object(Bucket=self.bucket, Key=self._full_key(key), Body=data, **args)
                return True
            except ClientError as e:
                code = _code(e)
                if code == "ConditionalRequestConflict" and attempt < 2:
                    # S3's answer while another conditional write to the key is in flight: try again.
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if code != "PreconditionFailed":
                    raise self._error("PutObject", key, e) from e
                # If botocore retried, an earlier attempt may have written our object and only
                # its answer was lost; then the 412 is about our own bytes, and we won.
                if _retry_attempts(e) and self._holds(key, data):
                    return True
                return False
        raise AssertionError("unreachable")  # pragma: no cover

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return self.get_bytes(key) == data
        except NotFound:
            return False

    def _put_args(self, sha256_hex: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
        if sha256_hex:
            args["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")
        if self.options.storage_class:
            args["StorageClass"] = self.options.storage_class
        if self.options.sse:
            args["ServerSideEncryption"] = self.options.sse
        if self.options.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.options.sse_kms_key_id
        return args

    def _lock_args(self, retain_until: datetime | None) -> dict[str, Any]:
        if retain_until is None:
            return {}
        if not self.options.locking:
            raise UsageError(f"{self.url}: a locked write needs lock_mode and lock_days on this destination")
        return {"ObjectLockMode": self.options.lock_mode, "ObjectLockRetainUntilDate": _utc(retain_until)}

    # -- object lock ----------------------------------------------------------------

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock on (asked once per destination)."""
        with self._lock_question:
            if self._lock_enabled is None:
                self._lock_enabled = self._ask_object_lock()
            return self._lock_enabled

    def _ask_object_lock(self) -> bool:
        try:
            answer = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as e:
            code = _code(e)
            if code == "ObjectLockConfigurationNotFoundError":
                return False  # never enabled
            if self.options.locking or code == "NoSuchBucket":
                raise self._error("GetObjectLockConfiguration", None, e) from e
            # Without lock options the answer only helps remove objects well (a denied permission,
            # a store without the API): carry on with plain deletes, as before, and say so once.
            log.warning("%s: cannot read the bucket's Object Lock configuration (%s); "
                        "treating it as a bucket without object lock", self.url, code)
            return False
        except (BotoCoreError, Boto3Error) as e:
            raise self._error("GetObjectLockConfiguration", None, e) from e
        config = answer.get("ObjectLockConfiguration", {})
        if config.get("Rule", {}).get("DefaultRetention"):
            # S3 then locks every object, our lock files too, which must stay removable.
            log.warning("%s: the bucket has a default Object Lock retention; lock files will be locked too and "
                        "cannot be released (remove the default rule and use --lock-days instead)", self.url)
        return config.get("ObjectLockEnabled") == "Enabled"

    def locked_until(self, key: str) -> datetime | None:
        """When the object's lock ends (datetime.max for a legal hold); None if it is not locked now."""
        if not self.object_lock_enabled():
            return None
        head = self._head_lock(key)
        return None if head is None else _lock_end(head)

    def extend_lock(self, key: str, until: datetime) -> bool:
        """Keep the object locked until at least `until`; True if its retention had to be lengthened.

        A retention still running keeps its mode (COMPLIANCE cannot be weakened; extending never
        needs a bypass); an ended or absent one gets this destination's mode. NotFound if missing.
        """
        until = _utc(until)
        head = self._head_lock(key)
        if head is None:
            raise NotFound(f"{self._where(key)}: no such object")
        current = head.get("ObjectLockRetainUntilDate")
        if current is not None and current >= until:
            return False
        running = current is not None and current > datetime.now(timezone.utc)
        mode = head.get("ObjectLockMode") if running and head.get("ObjectLockMode") else self.options.lock_mode
        if mode is None:
            raise UsageError(f"{self.url}: extending a lock needs lock_mode and lock_days on this destination")
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key),
                                "Retention": {"Mode": mode, "RetainUntilDate": until}}
        if head.get("VersionId"):
            args["VersionId"] = head["VersionId"]  # the version we looked at, not a newer one
        with self._errors("PutObjectRetention", key):
            self._client.put_object_retention(**args)
        return True

    def _head_lock(self, key: str) -> dict[str, Any] | None:
        """HEAD of the object (moto has no GetObjectRetention; HEAD carries the lock too), or None."""
        try:
            with self._errors("HeadObject", key):
                return self._client.head_object(Bucket=self.bucket, Key=self._full_key(key))
        except NotFound:
            return None

    # -- reading --------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as reader:
            return reader.read()

    def open_read(self, key: str) -> BinaryIO:
        with self._errors("GetObject", key):
            response = self._client.get_object(Bucket=self.bucket, Key=self._full_key(key))
        raw = _ObjectReader(response["Body"], lambda e: self._error("GetObject", key, e))
        return io.BufferedReader(raw, buffer_size=MiB)  # type: ignore[return-value]

    def get_file(self, key: str, path: Path) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # s3transfer writes a temporary file beside the target and renames it when whole.
        with self._errors("download", key):
            self._client.download_file(self.bucket, self._full_key(key), str(target), Config=self._transfer)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors("HeadObject", key):
                head = self._client.head_object(Bucket=self.bucket, Key=self._full_key(key))
        except NotFound:
            return None
        return ObjectInfo(key, head["ContentLength"], head["LastModified"].astimezone(timezone.utc))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=root + prefix, PaginationConfig={"PageSize": self.options.list_page_size}
        )
        with self._errors("ListObjectsV2", prefix or None):
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(root) :]
                    if not key or key.endswith("/"):
                        continue  # "folder" markers that S3 consoles create: not objects of ours
                    yield ObjectInfo(key, item["Size"], item["LastModified"].astimezone(timezone.utc))

    # -- removing -------------------------------------------------------------------

    def remove(self, key: str) -> None:
        check_key(key)  # a bad key is refused before anything is asked of S3
        if not self.object_lock_enabled():
            with self._errors("DeleteObject", key):
                self._client.delete_object(Bucket=self.bucket, Key=self._full_key(key))
            return
        head = self._head_lock(key)
        until = None if head is None else _lock_end(head)
        if until is not None:
            raise self._locked(key, until)
        refused = self._delete_versions(key)
        if refused and head is not None:
            # Locked between our look and the delete (a retention was just extended), or an older
            # version is locked and is now the current one: either way the key is still there.
            raise ObjectLocked(f"{self._where(key)}: cannot remove: a version is under object lock ({refused})")

    def _delete_versions(self, key: str) -> str | None:
        """Delete every version and delete marker of the key; the refusal S3 gave, if any."""
        full_key = self._full_key(key)
        paginator = self._client.get_paginator("list_object_versions")
        with self._errors("ListObjectVersions", key):
            versions = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for page in paginator.paginate(Bucket=self.bucket, Prefix=full_key)
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
                if v["Key"] == full_key  # the prefix also matches longer keys
            ]
        refused = None
        for start in range(0, len(versions), 1000):  # DeleteObjects takes up to 1000 keys
            with self._errors("DeleteObjects", key):
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": versions[start : start + 1000], "Quiet": True}
                )
            for error in answer.get("Errors", []):
                message = " ".join(str(error.get("Message", "")).split())
                if error.get("Code") != "AccessDenied" or "lock" not in message.lower():
                    raise DestinationError(f"{self._where(key)}: DeleteObjects failed: {error.get('Code')}: {message}")
                refused = f"{error.get('Code')}: {message}"
        return refused

    def _locked(self, key: str, until: datetime) -> ObjectLocked:
        when = "under legal hold" if until == _FOREVER else f"locked until {until:%Y-%m-%dT%H:%M:%SZ}"
        return ObjectLocked(f"{self._where(key)}: cannot remove: {when} (S3 Object Lock)")

    # -- storage classes and retrieval from the archive classes ------------------------

    def with_storage_class(self, storage_class: str | None) -> "S3Destination":
        if not storage_class or storage_class == self.options.storage_class:
            return self
        return S3Destination(self.bucket, self.prefix, dataclasses.replace(self.options, storage_class=storage_class))

    def object_state(self, key: str) -> ColdState:
        """One HeadObject; NotFound when the object is missing."""
        full_key = self._full_key(key)
        with self._cold_errors("HeadObject", key):
            head = self._client.head_object(Bucket=self.bucket, Key=full_key)
        storage_class = head.get("StorageClass") or "STANDARD"
        archive_status = head.get("ArchiveStatus")
        restore, expiry = None, None
        match = _RESTORE_HEADER.search(head.get("Restore") or "")
        if match:
            restore = "ongoing" if match.group(1) == "true" else "done"
            expiry = match.group(2)
        needs = storage_class in RETRIEVAL_CLASSES or bool(archive_status)
        return ColdState(key, head["ContentLength"], storage_class, needs, restore, expiry, archive_status)

    def start_retrieval(self, state: ColdState, *, days: int = 7, tier: str = "Standard") -> ColdState:
        """Ask S3 for a readable copy of the object (RestoreObject); a retrieval already running is fine."""
        if state.readable:
            return state
        if state.storage_class == "DEEP_ARCHIVE" and tier == "Expedited":
            raise UsageError("DEEP_ARCHIVE has no Expedited retrieval: use --retrieval-tier Standard (within 12 h) or Bulk (within 48 h)")
        request: dict[str, Any] = {"GlacierJobParameters": {"Tier": tier}}
        if not state.archive_status:
            # Intelligent-Tiering's archive tiers move the object back for good: S3 refuses Days there.
            request["Days"] = days
        full_key = self._full_key(state.key)
        try:
            with self._cold_errors("RestoreObject", state.key, passthrough=("RestoreAlreadyInProgress",)):
                self._client.restore_object(Bucket=self.bucket, Key=full_key, RestoreRequest=request)
        except ClientError as e:  # only the passthrough code comes out raw
            if _raw_code(e) != "RestoreAlreadyInProgress":
                raise  # pragma: no cover - _cold_errors converts every other code
        log.info("%s/%s: retrieval from %s started (%s tier)", self.url, state.key, state.storage_class, tier)
        return dataclasses.replace(state, restore="ongoing", expiry=None)

    @contextmanager
    def _cold_errors(self, operation: str, key: str, passthrough: tuple[str, ...] = ()) -> Iterator[None]:
        """HeadObject / RestoreObject's failure as one line naming the object and S3's code, never a credential."""
        where = f"{self.url}/{key}"
        try:
            yield
        except ClientError as e:
            code = _raw_code(e)
            if code in passthrough:
                raise
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            if code in _NOT_FOUND_CODES:
                raise NotFound(f"{where}: no such object") from None
            if code == "GlacierExpeditedRetrievalNotAvailable":
                raise DestinationError(f"{where}: S3 has no Expedited retrieval capacity right now; use the Standard tier") from None
            message = " ".join(str(e.response.get("Error", {}).get("Message", "")).split())
            raise DestinationError(f"{where}: {operation} failed: {code} (HTTP {status}){': ' + message if message else ''}") from None
        except BotoCoreError as e:
            raise DestinationError(f"{where}: {operation} failed: {type(e).__name__}: {' '.join(str(e).split())}") from None

    def close(self) -> None:
        self._client.close()

    # -- errors ---------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str | None) -> str:
        """Where an error happened; key may be a partial listing prefix, so it is not re-checked."""
        return f"{self.url}/{key}" if key else self.url

    @contextmanager
    def _errors(self, operation: str, key: str | None, passthrough: tuple[str, ...] = ()) -> Iterator[None]:
        try:
            yield
        except ClientError as e:
            if _code(e) in passthrough:
                raise
            raise self._error(operation, key, e) from e
        except (BotoCoreError, Boto3Error) as e:
            raise self._error(operation, key, e) from e

    def _error(self, operation: str, key: str | None, error: Exception) -> QilbeeBackupError:
        """One line for a person: where, what, and S3's code; never a credential."""
        where = self._where(key)
        if isinstance(error, S3UploadFailedError) and isinstance(error.__context__, ClientError):
            error = error.__context__  # boto3 flattens the S3 answer into text; use the original
        if isinstance(error, ClientError):
            code = _code(error)
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            message = " ".join(str(error.response.get("Error", {}).get("Message", "")).split())
            if code == "NoSuchBucket" or (code == "NotFound" and not self._bucket_exists()):
                return DestinationError(f"{where}: bucket {self.bucket!r} does not exist (NoSuchBucket)")
            if code in _NOT_FOUND_CODES and key is not None:
                return NotFound(f"{where}: no such object")
            if code in _CHECKSUM_CODES:
                return IntegrityError(f"{where}: {operation} refused by S3: the bytes do not match their checksum ({code})")
            detail = f": {message}" if message else ""
            return DestinationError(f"{where}: {operation} failed: {code} (HTTP {status}){detail}")
        if isinstance(error, FlexibleChecksumError):
            return IntegrityError(f"{where}: downloaded bytes do not match the checksum S3 stored")
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return DestinationError(
                f"{where}: no usable AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            )
        if isinstance(error, BotoConnectionError):
            endpoint = redact_url(self._client.meta.endpoint_url) if hasattr(self, "_client") else "?"
            return DestinationError(
                f"{where}: {operation} failed: cannot reach S3 endpoint {endpoint} "
                f"(tried up to {self.options.max_attempts} times; {type(error).__name__})"
            )
        text = " ".join(str(error).split())
        return DestinationError(f"{where}: {operation} failed: {type(error).__name__}: {text}")

    def _bucket_exists(self) -> bool:
        """HEAD answers 404 for a missing key and a missing bucket alike; ask once which it is."""
        if self._bucket_seen:
            return True
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if _code(e) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise self._error("HeadBucket", None, e) from e
        except BotoCoreError as e:
            raise self._error("HeadBucket", None, e) from e
        self._bucket_seen = True
        return True


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise UsageError(f"retain-until {moment!r} needs a time zone")
    return moment.astimezone(timezone.utc)


def _lock_end(head: dict[str, Any]) -> datetime | None:
    """When the lock HEAD reports ends, if it has not ended yet (by this machine's clock)."""
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return _FOREVER
    until = head.get("ObjectLockRetainUntilDate")
    if head.get("ObjectLockMode") and until is not None and until > datetime.now(timezone.utc):
        return until.astimezone(timezone.utc)
    return None


def _code(error: ClientError) -> str:
    code = str(error.response.get("Error", {}).get("Code", "")) or str(
        error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "Unknown")
    )
    return _STATUS_NAMES.get(code, code)


def _raw_code(error: ClientError) -> str:
    """S3's error code as botocore gives it (the HTTP status for a bodyless answer)."""
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def _retry_attempts(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)


class _ObjectReader(io.RawIOBase):
    """An object's streaming body whose failures become our one-line errors."""

    def __init__(self, body: Any, to_error: Any) -> None:
        self._body = body
        self._to_error = to_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self._read(None)

    def _read(self, size: int | None) -> bytes:
        try:
            return self._body.read(size)
        except (BotoCoreError, ClientError) as e:
            raise self._to_error(e) from e

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
