"""Where a server's snapshot path is readable here, and the offline copy of a stopped data directory."""

from __future__ import annotations

import os
from pathlib import Path

from qilbee_backup.snapshot import copy_data_dir, map_server_path


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
