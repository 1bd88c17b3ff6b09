"""Monthly archives: one self-contained tar + zstd file per archive, for cold storage.

Stored beside a repository's blobs/ and backups/ as ``archives/<id>.tar.zst`` (in the storage class
asked for) and ``archives/<id>.json``, its record and commit point (see store). The archive holds the
manifest, SHA256SUMS and data/<path> for every file (see format), so it restores by hand with
standard tools alone:

    zstd -dc ID.tar.zst | tar -x -C DIR && (cd DIR/data && sha256sum -c ../SHA256SUMS)

The file is built into a local spool and uploaded with the destination's transfer manager
(multipart when large). Restoring streams the object through zstd and tar into the restorer's
staging, checking every file's size and SHA-256 against the manifest and the whole file against
its record (see restore).
"""

from ..restorer import Progress
from .format import (
    ARCHIVE_SUFFIX,
    CHUNK,
    DATA_DIR,
    DEFAULT_KIND,
    MANIFEST_NAME,
    SUMS_NAME,
    BuiltArchive,
    build_archive,
    read_archive,
    sums_text,
)
from .restore import restore_archive, restore_archive_stream
from .store import (
    ARCHIVES,
    DEFAULT_RETENTION,
    RECORD_FORMAT,
    RECORD_SUFFIX,
    ArchiveExists,
    ArchiveFile,
    ArchiveRecord,
    archive_catalog,
    archive_ids,
    archive_key,
    check_storage_class,
    list_archives,
    load_archive,
    prune_archives,
    read_record,
    record_key,
    upload_archive,
    verify_archive,
)

__all__ = [
    "ARCHIVES", "ARCHIVE_SUFFIX", "CHUNK", "DATA_DIR", "DEFAULT_KIND", "DEFAULT_RETENTION", "MANIFEST_NAME",
    "RECORD_FORMAT", "RECORD_SUFFIX", "SUMS_NAME", "ArchiveExists", "ArchiveFile", "ArchiveRecord", "BuiltArchive",
    "Progress", "archive_catalog", "archive_ids", "archive_key", "build_archive", "check_storage_class", "list_archives", "load_archive",
    "prune_archives", "read_archive", "read_record", "record_key", "restore_archive", "restore_archive_stream",
    "sums_text", "upload_archive", "verify_archive",
]
