"""Where repositories live: one Destination interface, a class per kind of store.

    dest = open_destination("s3://bucket/prefix", storage_class="STANDARD_IA")
    dest = open_destination("/srv/backups/repo")      # or file:///srv/backups/repo
"""

from __future__ import annotations

from typing import Any

from qilbee_backup.destinations.base import Destination, ObjectInfo
from qilbee_backup.destinations.file import FileDestination
from qilbee_backup.destinations.url import FileLocation, S3Location, check_key, parse_url, redact_url
from qilbee_backup.errors import UsageError

__all__ = [
    "Destination",
    "FileDestination",
    "ObjectInfo",
    "S3Destination",
    "S3Options",
    "check_key",
    "open_destination",
    "parse_url",
    "redact_url",
]


def __getattr__(name: str) -> Any:
    # boto3 takes a tenth of a second to import: only a command that reaches S3 pays it.
    if name == "S3Destination":
        from qilbee_backup.destinations.s3 import S3Destination

        return S3Destination
    if name == "S3Options":
        from qilbee_backup.destinations.s3_options import S3Options

        return S3Options
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_destination(url: str, **options: Any) -> Destination:
    """The destination a repository URL names (see destinations.url for the forms).

    options are S3Options fields. A file destination has no storage classes, encryption
    or transfer tuning, so it accepts and ignores them: one set of options can be given
    to every repository of a 3-2-1 setup. Object lock is the exception: a directory cannot
    make backups immutable, and immutability silently missing is dangerous, so lock_mode /
    lock_days on a file repository are a UsageError. An unknown option name is a UsageError.
    With lock options, opening an S3 destination asks the bucket whether Object Lock is on
    (DestinationError if not); without them, opening contacts nobody.
    """
    from qilbee_backup.destinations.s3_options import S3Options

    unknown = sorted(set(options) - S3Options.names())
    if unknown:
        raise UsageError(f"unknown destination option(s) {', '.join(unknown)} for {redact_url(str(url))!r}")
    location = parse_url(url)
    s3_options = S3Options(**options)  # checked for every URL: a typo is an error wherever it is given
    if isinstance(location, S3Location):
        from qilbee_backup.destinations.s3 import S3Destination

        return S3Destination(location.bucket, location.prefix, s3_options)
    assert isinstance(location, FileLocation)
    if s3_options.locking:
        raise UsageError(f"object lock (--lock-days) needs an s3:// repository; {redact_url(str(url))!r} is a directory")
    return FileDestination(location.path, url=url)
