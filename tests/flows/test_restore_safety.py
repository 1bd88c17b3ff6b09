"""A restore must not harm, where the operator sees it (the real `qilbee-backup` CLI, real emulator
processes on real RocksDB): never into a directory a running server uses; a restore whose check
fails leaves the target as it was and says why; a backup that cannot fit is refused up front."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from flows.backup import backup
from flows.restore import restore
from qilbee_backup.emulator.store import open_readonly_counts
from qilbee_backup.manifest import FileEntry, Manifest, SourceInfo, new_backup_id
from qilbee_backup.repository import open_repository
from qilbee_backup.backup import backup_directory
from qilbee_backup.recovery import RecoveryError

CLI = Path(sys.executable).parent / "qilbee-backup"  # the console script the operator runs


@pytest.fixture
def cli(cli_env):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLI), *args], env=cli_env, capture_output=True, text=True, timeout=300)

    return run


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line the CLI prints (progress lines go to stderr too)."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("qilbee-backup: error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def beside(target: Path) -> list[str]:
    """What is beside the target apart from the restore's own (empty) lock file."""
    return sorted(n for n in os.listdir(target.parent) if target.name in n and not n.endswith(".qilbee-restore.lock"))


def kept_log(message: str) -> Path:
    """The check server's log an error names: kept in a temporary directory of its own."""
    return Path(re.search(r"\(log (\S+)\)$", message).group(1))


def node_count(url: str) -> int:
    return httpx.get(f"{url}/admin/stats").json()["storage"]["nodeCount"]


def test_restore_replace_into_a_running_servers_directory_is_refused(cli, emulator_factory, tmp_path):
    server = emulator_factory(seed_nodes=200)
    repo = str(tmp_path / "repo")
    backup(source=server.url, repos=[repo])
    httpx.post(f"{server.url}/graphs/ops/nodes", json={"labels": ["Late"], "properties": {}}).raise_for_status()
    nodes = node_count(server.url)

    done = cli("restore", "--repo", repo, "--data-dir", str(server.data_dir), "--replace")

    assert done.returncode == 2, done.stderr
    line = error_line(done)
    assert f"target {server.data_dir} is in use: process {server.pid} holds the RocksDB lock {server.data_dir}/LOCK" in line
    assert "stop the server first" in line and "--container" in line
    assert beside(server.data_dir) == [server.data_dir.name]  # nothing moved, nothing left beside it
    assert node_count(server.url) == nodes  # still serving its own data, the node made after the backup too
    server.restart()  # and its files are whole: RocksDB opens them again
    assert node_count(server.url) == nodes
    assert httpx.get(f"{server.url}/graphs/ops/nodes", params={"label": "Late"}).json()["count"] == 1


@pytest.fixture
def broken_backup(emulator, tmp_path) -> tuple[str, str]:
    """A repository whose latest backup lacks one SST file: it restores, and no server can open it."""
    snap = Path(httpx.post(f"{emulator.url}/admin/snapshot").json()["path"])
    figures = open_readonly_counts(snap)
    copy = tmp_path / "copy"
    shutil.copytree(snap, copy)
    sst = sorted(copy.glob("*.sst"))[0]
    sst.unlink()
    repo = str(tmp_path / "repo")
    backup_directory([open_repository(repo, must_exist=False)], copy, kind="adhoc", source=SourceInfo(url=emulator.url, mode="online"),
                     stats=figures, spool=tmp_path / "spool")
    return repo, sst.name


def test_a_restore_that_fails_its_check_leaves_no_trace_and_says_why(cli, broken_backup, tmp_path):
    repo, missing = broken_backup
    target = tmp_path / "area" / "restored"

    done = cli("restore", "--repo", repo, "--data-dir", str(target))

    assert done.returncode == 1, done.stderr
    line = error_line(done)
    assert "failed its check" in line and f"{missing}: No such file or directory" in line and "(empty log)" not in line
    assert not target.exists() and beside(target) == []  # no restored files, no check-server files, no restored.log
    log = kept_log(line)  # the whole log is kept apart, for a person
    assert log.is_file() and not log.is_relative_to(target.parent)
    shutil.rmtree(log.parent)


def test_a_failed_restore_into_an_empty_directory_leaves_it_empty(broken_backup, tmp_path):
    repo, _ = broken_backup
    target = tmp_path / "restored"
    target.mkdir()
    os.chmod(target, 0o750)
    with pytest.raises(RecoveryError, match="failed its check") as caught:
        restore(repo=repo, data_dir=str(target))
    assert os.listdir(target) == [] and stat.S_IMODE(target.stat().st_mode) == 0o750
    assert beside(target) == ["restored"]
    shutil.rmtree(kept_log(str(caught.value)).parent)


def test_a_check_server_that_writes_nothing_is_reported_as_such(emulator, tmp_path):
    repo = str(tmp_path / "repo")
    backup(source=emulator.url, repos=[repo])
    target = tmp_path / "restored"
    with pytest.raises(RecoveryError) as caught:
        restore(repo=repo, data_dir=str(target), server_cmd="sh -c 'exit 3' {data_dir} {port}")
    text = str(caught.value)
    assert "exited with code 3" in text and "it wrote nothing to its log" in text and "(empty log)" not in text
    assert not target.exists() and beside(target) == []
    shutil.rmtree(kept_log(text).parent)


def test_a_backup_that_cannot_fit_is_refused_before_anything_is_written(cli, tmp_path):
    repo = open_repository(str(tmp_path / "repo"), must_exist=False)
    repo.init()
    huge = FileEntry(path="000001.sst", size=2**50, mode=0o644, sha256="ab" * 32, stored_size=1)
    manifest = Manifest(backup_id=new_backup_id(), kind="adhoc", created_at=datetime.now(timezone.utc),
                        source=SourceInfo(url="http://127.0.0.1:7474", mode="online"), files=[huge], bytes_total=2**50)
    repo.write_manifest(manifest, check_blobs=False)
    target = tmp_path / "restored"

    done = cli("restore", "--repo", str(tmp_path / "repo"), "--data-dir", str(target), "--backup", manifest.backup_id)

    assert done.returncode == 1, done.stderr
    assert re.search(r"no space left on device: needs \d+ bytes, \d+ free$", error_line(done))
    assert not target.exists() and beside(target) == []
