"""Releasing server checkpoints after a backup, against the emulator as a real process on real RocksDB."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from qilbee_backup.client import QilbeeClient, SnapshotDeleteNotSupported, SnapshotNotFound
from qilbee_backup.snapshot import TakenSnapshot, release_checkpoint, take_snapshot

pytestmark = pytest.mark.integration

API_KEY = "qilbee_live_CHECKPOINT-cleanup-key"
FAST = {"retries": 1, "backoff": 0.05, "timeout": 10.0}


def _on_disk(data_dir: Path) -> list[str]:
    """Checkpoint directories under the data directory, whatever the server says."""
    snapshots = data_dir / "snapshots"
    return sorted(e.name for e in snapshots.iterdir() if e.is_dir() and not e.is_symlink()) if snapshots.is_dir() else []


def _listed(client: QilbeeClient) -> list[str]:
    return [s.snapshot_id for s in client.list_snapshots()]


def test_each_backup_releases_its_own_checkpoint(emulator_factory):
    server = emulator_factory(seed_nodes=50, api_key=API_KEY)
    with QilbeeClient(server.url, api_key=API_KEY, **FAST) as client:
        taken = [take_snapshot(client, mode="online") for _ in range(3)]
        ids = [t.snapshot_id for t in taken]
        assert _listed(client) == ids and _on_disk(server.data_dir) == sorted(ids)
        assert all((t.path / "CURRENT").is_file() for t in taken)

        for t in taken:
            released = release_checkpoint(client, t)
            assert released.as_dict() == {"deleted": [t.snapshot_id], "kept": [], "warnings": []}
            assert not t.path.exists()

        assert _listed(client) == [] and _on_disk(server.data_dir) == []
        assert not os.path.lexists(server.data_dir / "snapshots" / "latest")
        assert client.stats().node_count == 50  # the live database is untouched
        with pytest.raises(SnapshotNotFound):
            client.delete_snapshot(ids[0])


def test_keep_newest_keeps_exactly_the_newest(emulator_factory):
    server = emulator_factory(seed_nodes=20)
    with QilbeeClient(server.url, **FAST) as client:
        taken = [take_snapshot(client, mode="online") for _ in range(3)]
        released = release_checkpoint(client, taken[-1], keep_newest=1, grace=timedelta(0))
        newest = taken[-1].snapshot_id

        assert released.deleted == [t.snapshot_id for t in taken[:2]] and released.kept == [newest]
        assert not released.warnings
        assert _listed(client) == [newest] and _on_disk(server.data_dir) == [newest]
        assert os.readlink(server.data_dir / "snapshots" / "latest") == newest
        assert (taken[-1].path / "CURRENT").is_file()


def test_a_server_without_the_route_gives_a_typed_error_and_release_only_warns(emulator_factory):
    server = emulator_factory(admin_api=False)
    taken = TakenSnapshot(mode="online", path=server.data_dir, snapshot_id="20240115-103000",
                          server_path="/data/snapshots/20240115-103000", size_bytes=0, stats={}, server_version=None)
    with QilbeeClient(server.url, **FAST) as client:
        with pytest.raises(SnapshotDeleteNotSupported) as caught:
            client.delete_snapshot("20240115-103000")
        assert str(caught.value) == (
            f"QilbeeDB at {server.url} has no snapshot API (404 for DELETE /admin/snapshots/20240115-103000)")

        released = release_checkpoint(client, taken)
    assert released.deleted == [] and released.warnings == [
        f"{caught.value}; this run's checkpoint stays at /data/snapshots/20240115-103000 on the server"]
    assert (server.data_dir / "CURRENT").is_file()
