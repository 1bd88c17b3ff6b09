"""Where a server's snapshot path is readable here, the offline copy of a stopped data directory,
and releasing the server's checkpoints once a backup is committed."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from qilbee_backup.client import (
    ServerError,
    Snapshot,
    SnapshotDeleteNotSupported,
    SnapshotNotFound,
    SnapshotNotSupported,
)
from qilbee_backup.errors import UsageError
from qilbee_backup.snapshot import TakenSnapshot, copy_data_dir, map_server_path, release_checkpoint


def test_server_path_maps_through_data_path():
    assert map_server_path("/data/snapshots/20240115-103000", data_path=Path("/srv/qilbee")) == Path(
        "/srv/qilbee/snapshots/20240115-103000")


def test_server_path_maps_through_the_longest_matching_mount():
    mounts = [{"Destination": "/", "Source": "/wrong"}, {"Destination": "/data", "Source": "/var/lib/docker/volumes/q/_data"}]
    assert map_server_path("/data/snapshots/x", mounts=mounts) == Path("/var/lib/docker/volumes/q/_data/snapshots/x")
    assert map_server_path("/database/snapshots/x", mounts=[mounts[1]]) == Path("/database/snapshots/x")


def test_a_local_server_path_is_used_as_is():
    assert map_server_path("/tmp/emulator/snapshots/x") == Path("/tmp/emulator/snapshots/x")


def test_offline_copy_links_immutable_files_copies_the_rest_and_skips_snapshots(tmp_path):
    src = tmp_path / "data"
    (src / "snapshots" / "old").mkdir(parents=True)
    (src / "snapshots" / "old" / "000001.sst").write_bytes(b"old checkpoint")
    (src / "000007.sst").write_bytes(b"immutable table")
    (src / "MANIFEST-000005").write_bytes(b"changes")
    (src / "CURRENT").write_text("MANIFEST-000005\n")
    os.symlink("/etc/passwd", src / "sneaky")
    dst = tmp_path / "copy"

    copied = copy_data_dir(src, dst)

    assert sorted(p.name for p in dst.iterdir()) == ["000007.sst", "CURRENT", "MANIFEST-000005"]
    assert copied == len(b"immutable table") + len(b"changes") + len("MANIFEST-000005\n")
    assert os.stat(dst / "000007.sst").st_ino == os.stat(src / "000007.sst").st_ino  # hard link: no bytes copied
    assert os.stat(dst / "MANIFEST-000005").st_ino != os.stat(src / "MANIFEST-000005").st_ino  # mutable: a real copy
    (src / "MANIFEST-000005").write_bytes(b"the server wrote again")
    assert (dst / "MANIFEST-000005").read_bytes() == b"changes"


# ---------------------------------------------------------------- release_checkpoint

OLD = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


class FakeServer:
    """A client's snapshot calls over a dict of checkpoints; ``refuse`` maps an id to the error its delete raises."""

    def __init__(self, ids_and_times, refuse=None, listing_error=None):
        self.snapshots = {i: t for i, t in ids_and_times}
        self.refuse = refuse or {}
        self.listing_error = listing_error
        self.deletes = []

    def list_snapshots(self):
        if self.listing_error:
            raise self.listing_error
        return [Snapshot(snapshot_id=i, path=f"/data/snapshots/{i}", created_at=t and t.isoformat())
                for i, t in self.snapshots.items()]

    def delete_snapshot(self, snapshot_id):
        self.deletes.append(snapshot_id)
        if snapshot_id in self.refuse:
            raise self.refuse[snapshot_id]
        if self.snapshots.pop(snapshot_id, "gone") == "gone":
            raise SnapshotNotFound("gone", method="DELETE", path=snapshot_id, status=404)


def _taken(snapshot_id, mode="online"):
    return TakenSnapshot(mode=mode, path=Path("/x"), snapshot_id=snapshot_id, server_path=f"/data/snapshots/{snapshot_id}",
                         size_bytes=0, stats={}, server_version="0.1.0")


def _error(kind, message):
    return kind(message, method="DELETE", path="/admin/snapshots/x", status=404)


def test_release_deletes_only_this_runs_checkpoint_by_default():
    server = FakeServer([("a", OLD), ("b", OLD), ("mine", OLD)])
    released = release_checkpoint(server, _taken("mine"))
    assert server.deletes == ["mine"] and sorted(server.snapshots) == ["a", "b"]
    assert released.as_dict() == {"deleted": ["mine"], "kept": [], "warnings": []}
    # Already gone (a retried DELETE, an operator): nothing to say.
    assert release_checkpoint(server, _taken("mine")).as_dict() == {"deleted": [], "kept": [], "warnings": []}
    # Offline mode took no checkpoint: the server is not asked anything.
    release_checkpoint(server, _taken("offline-20240115-103000", mode="offline"), keep_newest=1)
    assert server.deletes == ["mine", "mine"] and sorted(server.snapshots) == ["a", "b"]


def test_keep_newest_orders_by_time_then_by_the_numbers_in_the_id():
    ids = ["20240115-103000-10", "20240115-103000-9", "20240115-103000", "20240114-000000", "latest"]
    server = FakeServer([(i, OLD if i != "20240114-000000" else OLD - timedelta(days=1)) for i in ids])
    released = release_checkpoint(server, _taken("20240115-103000-10"), keep_newest=2, grace=timedelta(0))
    assert released.deleted == ["20240114-000000", "20240115-103000"]  # oldest first; never `latest`
    assert released.kept == ["20240115-103000-9", "20240115-103000-10"] and not released.warnings


def test_keep_newest_spares_other_runs_young_checkpoints_but_not_its_own():
    now = datetime.now(timezone.utc)
    server = FakeServer([("old", OLD), ("young", now - timedelta(minutes=5)), ("unknown-age", None),
                         ("mine", now - timedelta(minutes=1)), ("newer", now)])
    released = release_checkpoint(server, _taken("mine"), keep_newest=1)
    assert released.deleted == ["unknown-age", "old", "mine"]
    assert released.kept == ["young", "newer"]


def test_failures_are_warnings_never_errors(caplog):
    refused = FakeServer([("a", OLD), ("b", OLD), ("c", OLD)],
                         refuse={"a": ServerError("QilbeeDB failed DELETE", method="DELETE", path="a", status=500)})
    with caplog.at_level(logging.WARNING, logger="qilbee_backup.snapshot"):
        released = release_checkpoint(refused, _taken("c"), keep_newest=1, grace=timedelta(0))
    assert released.deleted == ["b"] and released.warnings == ["could not delete checkpoint a: QilbeeDB failed DELETE"]
    assert caplog.messages == released.warnings

    cannot = FakeServer([("a", OLD), ("b", OLD)], refuse={i: _error(SnapshotDeleteNotSupported, "no DELETE route")
                                                          for i in "ab"})
    released = release_checkpoint(cannot, _taken("b"), keep_newest=1, grace=timedelta(0))
    assert cannot.deletes == ["a"]  # the rest would be refused alike
    assert released.warnings == ["no DELETE route; this run's checkpoint stays at /data/snapshots/b on the server"]

    unlisted = FakeServer([], listing_error=_error(SnapshotNotSupported, "no snapshot API"))
    released = release_checkpoint(unlisted, _taken("b"), keep_newest=3)
    assert unlisted.deletes == []
    assert released.warnings == ["could not list the server's checkpoints, so none was deleted: no snapshot API"]


def test_a_negative_keep_newest_is_a_usage_error():
    with pytest.raises(UsageError):
        release_checkpoint(FakeServer([]), _taken("mine"), keep_newest=-1)
