"""Names and checks on what callers pass in: repository URLs, object keys, SHA-256 digests.

Accepted repository URLs:
  /abs/path, rel/path       a local directory (a plain path)
  file:///abs/path          the same, as a URL (percent-encoded; file://localhost/... too)
  s3://bucket[/prefix]      an S3 bucket, optionally under a prefix

Anything else is a UsageError whose one-line message shows the URL with any
embedded credentials (user:password@) and query string blanked out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from qilbee_backup.errors import UsageError

HINT = "use a path, file:///abs/path or s3://bucket/prefix"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
# Loose on purpose: the rule botocore itself applies, so legacy bucket names still work;
# S3 gives its own error for names it refuses.
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{3,255}$")

# Temporary files a FileDestination writes next to their final name: ".<name>.<random>.qbtmp".
TEMP_SUFFIX = ".qbtmp"


@dataclass(frozen=True)
class FileLocation:
    path: Path


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing '/'; "" for the bucket's root

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def redact_url(url: str) -> str:
    """The URL as it may appear in a message: user:password@ and ?query replaced by '***'."""
    shown = _USERINFO.sub(r"\1***@", url)
    if "?" in shown:
        shown = shown.split("?", 1)[0] + "?***"
    return shown


def _bad(url: str, why: str) -> UsageError:
    return UsageError(f"bad repository URL {redact_url(url)!r}: {why}")


def parse_url(url: str) -> FileLocation | S3Location:
    """Where a repository URL points; raises UsageError for anything not listed above."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError(f"empty repository URL: {HINT}")
    if any(ord(c) < 32 for c in url):
        raise _bad(url, "it contains control characters")
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else None
    if scheme == "file":
        return _parse_file(url)
    if scheme == "s3":
        return _parse_s3(url)
    if scheme is not None and url[match.end() :].startswith("//"):
        raise _bad(url, f"unsupported scheme {scheme!r}; {HINT}")
    return FileLocation(Path(url))  # a plain path ("name:with-colon" is a path too)


def _parse_file(url: str) -> FileLocation:
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise _bad(url, "a file URL takes no query or fragment (percent-encode '?' and '#' in paths)")
    if parts.netloc not in ("", "localhost"):
        raise _bad(url, "a file URL must be absolute, like file:///abs/path")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise _bad(url, "a file URL must be absolute, like file:///abs/path")
    return FileLocation(Path(path))


def _parse_s3(url: str) -> S3Location:
    if not url[3:].startswith("//"):
        raise _bad(url, "an S3 URL looks like s3://bucket/prefix")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise _bad(url, "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise _bad(url, "an S3 URL takes no query or fragment")
    bucket = parts.netloc
    if not bucket:
        raise _bad(url, "no bucket; an S3 URL looks like s3://bucket/prefix")
    if not _BUCKET.match(bucket):
        raise _bad(url, f"{bucket!r} is not a valid bucket name")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except UsageError as e:
            raise _bad(url, f"bad prefix: {e}") from None
    return S3Location(bucket, prefix)


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def check_key(key: str) -> str:
    """Return key if it is a clean relative '/'-separated name; raise UsageError otherwise.

    Refused: empty, absolute, backslashes, NUL, empty / '.' / '..' segments, and names
    shaped like our temporary files (so a key can never be mistaken for one).
    """
    if not isinstance(key, str) or not key:
        raise UsageError("empty object key")
    problem = None
    if key.startswith("/"):
        problem = "it is absolute"
    elif "\\" in key or "\x00" in key:
        problem = "it contains a backslash or NUL"
    else:
        for segment in key.split("/"):
            if segment in ("", ".", ".."):
                problem = "it has an empty, '.' or '..' segment"
                break
            if is_temp_name(segment):
                problem = f"segments ending in {TEMP_SUFFIX!r} are reserved for temporary files"
                break
    if problem:
        raise UsageError(f"invalid object key {key!r}: {problem}")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: "" or a key's beginning (its last segment may be partial or empty)."""
    if prefix == "":
        return prefix
    directory, _, last = prefix.rpartition("/")
    if directory:
        check_key(directory)
    if prefix.startswith("/") or "\\" in last or "\x00" in last:
        raise UsageError(f"invalid listing prefix {prefix!r}")
    return prefix


def check_sha256_hex(sha256: str | None) -> str | None:
    """None, or the digest as 64 lowercase hex digits; UsageError for anything else."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise UsageError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return sha256.lower()
