"""Restoring an archive: the tar stream is checked and written through the restorer's own staging
(target lock, pending swaps, temporary directory, replace through a Swap), like a blob restore."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import BinaryIO

from .. import restorer
from ..retrieval import RetrievalPending, object_state
from ..repository import Repository
from .format import read_archive
from .store import ArchiveRecord, archive_key

log = logging.getLogger(__name__)


def restore_archive(
    repo: Repository,
    record: ArchiveRecord,
    target: Path,
    *,
    replace_existing: bool = False,
    progress: restorer.Progress | None = None,
) -> restorer.RestoreResult:
    """Restore an archive from the repository into ``target`` (see restore_archive_stream).

    RetrievalPending when the file is in a cold class and not retrieved: retrieval.ensure_readable
    starts (and waits for) the retrieval first.
    """
    key = archive_key(record.archive_id)
    state = object_state(repo.dest, key)
    if not state.readable:
        raise RetrievalPending(f"{repo.url}/{key} is in {state.storage_class} and not retrieved; start its retrieval first")
    with repo.dest.open_read(key) as reader:
        return restore_archive_stream(repo.opened(reader, f"archive:{record.archive_id}"), record, target,
                                      replace_existing=replace_existing, progress=progress)


def restore_archive_stream(
    reader: BinaryIO,
    record: ArchiveRecord,
    target: Path,
    *,
    replace_existing: bool = False,
    progress: restorer.Progress | None = None,
) -> restorer.RestoreResult:
    """Stream an archive (the .tar.zst bytes) into the directory ``target``, checked against ``record``.

    Same contract as restorer.restore_backup: target missing or empty (or replace_existing, which
    returns the Swap to commit or roll back); written into a temporary directory beside it, every
    file fsynced, renamed into place; on any failure the target is untouched and the error is one
    line naming the archive and the file. Refused: members outside data/, absolute or '..' paths,
    links and anything but regular files, files not in the manifest, a manifest or SHA256SUMS that
    differ from the record, and a file whose bytes differ from the record's size or SHA-256.
    """
    started = time.monotonic()
    manifest = record.manifest
    # staged_restore applies the blob restore's own checks first: safe paths, no duplicates or clashes.
    with restorer.staged_restore(target, manifest, replace_existing=replace_existing) as staging:
        read = read_archive(reader, manifest, size=record.archive.size, sha256=record.archive.sha256,
                            create=staging.create_file, progress=progress)
    archive_id = staging.plan.backup_id
    result = restorer.RestoreResult(archive_id, staging.target, len(manifest.files), manifest.bytes_total, read,
                                    time.monotonic() - started, staging.swap, staging.empty_dir)
    log.info("restored archive %s into %s: %d files, %d bytes (%d read) in %.1fs", archive_id, staging.target,
             result.files, result.bytes, read, result.duration_s)
    return result
