"""Spools: owner records, removing the spools of dead runs (never a live run's), iterative removal, races."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import qilbee_backup.spool as spool_module
from qilbee_backup.errors import UsageError
from qilbee_backup.spool import OWNER_FILE, clean_stale_spools, new_spool, remove_spool, remove_tree

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * 3600

# A run in miniature: make a spool, stage into it, say where it is, then stay busy until killed.
CHILD = """
import sys, time
from qilbee_backup.spool import new_spool
spool = new_spool(sys.argv[1])
(spool / "blobs" / "ab").mkdir(parents=True)
(spool / "blobs" / "ab" / "abcd.zst").write_bytes(b"x" * 4096)
(spool / "top.zst").write_bytes(b"y")
print(spool, flush=True)
time.sleep(120)
"""


@pytest.fixture
def runs(tmp_path):
    """Start child processes that each make a spool under tmp_path; every one still running is killed at the end."""
    started: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, Path]:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                 cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        started.append(child)
        return child, Path(child.stdout.readline().strip())

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def _record(spool: Path) -> dict:
    return json.loads((spool / OWNER_FILE).read_text())


def _rewrite_record(spool: Path, **changes) -> None:
    (spool / OWNER_FILE).write_text(json.dumps({**_record(spool), **changes}))


def _age(path: Path, seconds: float) -> None:
    """Backdate a directory and everything directly in it."""
    when = time.time() - seconds
    for p in [path, *path.iterdir()]:
        os.utime(p, (when, when), follow_symlinks=False)


def test_a_killed_runs_spool_is_removed_and_live_ones_are_kept(runs, tmp_path):
    killed, killed_spool = runs()
    alive, alive_spool = runs()
    mine = new_spool(tmp_path)
    assert _record(killed_spool)["pid"] == killed.pid

    killed.send_signal(signal.SIGKILL)
    killed.wait()
    removed = clean_stale_spools(tmp_path)

    assert removed == [killed_spool] and not killed_spool.exists()
    assert (alive_spool / "blobs" / "ab" / "abcd.zst").is_file() and alive.poll() is None
    assert mine.is_dir() and (mine / OWNER_FILE).is_file()
    assert clean_stale_spools(tmp_path) == []


def test_new_spool_is_private_and_records_its_owner(tmp_path):
    spool = new_spool(tmp_path)
    assert spool.parent == tmp_path and spool.name.startswith("qilbee-spool-")
    assert (spool.stat().st_mode & 0o777) == 0o700
    record = _record(spool)
    with open(f"/proc/{os.getpid()}/stat") as stat:
        start_time = int(stat.read().rsplit(")", 1)[1].split()[19])
    assert (record["pid"], record["start_time"]) == (os.getpid(), start_time)
    assert record["boot_id"] and record["pid_ns"].startswith("pid:") and record["host"]
    assert os.listdir(spool) == [OWNER_FILE]  # nothing else for the stages to trip over
    (spool / "x" / "y").mkdir(parents=True)
    assert remove_spool(spool) is True and not spool.exists()
    assert remove_spool(spool) is True  # twice is fine: another run may have removed it first


def test_new_spool_in_a_missing_directory_is_a_one_line_usage_error(tmp_path):
    with pytest.raises(UsageError) as caught:
        new_spool(tmp_path / "nowhere")
    assert str(caught.value) == f"spool directory {tmp_path / 'nowhere'} does not exist"


def test_a_recycled_pid_is_not_taken_for_the_owner(tmp_path):
    spool = new_spool(tmp_path)
    _rewrite_record(spool, start_time=_record(spool)["start_time"] - 1)  # our pid, but an older process
    assert clean_stale_spools(tmp_path) == [spool] and not spool.exists()


def test_owners_that_cannot_be_seen_from_here_are_kept(tmp_path):
    other_host, other_namespace, earlier_boot = (new_spool(tmp_path) for _ in range(3))
    dead = {"pid": 2**22 + 1, "start_time": 1}  # above any pid_max: no such process
    _rewrite_record(other_host, host="another-host", **dead)
    _rewrite_record(other_namespace, pid_ns="pid:[1]", **dead)
    _rewrite_record(earlier_boot, boot_id="00000000-0000-0000-0000-000000000000", pid=os.getpid())
    assert clean_stale_spools(tmp_path) == [earlier_boot]
    assert other_host.is_dir() and other_namespace.is_dir()


def test_spools_without_a_record_go_only_after_a_day_of_stillness(tmp_path):
    young = tmp_path / "qilbee-spool-young123"
    old = tmp_path / "qilbee-spool-old45678"
    old_archive = tmp_path / "qilbee-archive-old45678"  # the archive flow's former prefix
    still_writing = tmp_path / "qilbee-spool-writing"
    for spool in (young, old, old_archive, still_writing):
        spool.mkdir()
        (spool / "blob.zst").write_bytes(b"z")
    for spool in (old, old_archive, still_writing):
        _age(spool, 2 * DAY)
    os.utime(still_writing / "blob.zst")  # a run is still writing here

    assert sorted(clean_stale_spools(tmp_path)) == sorted([old, old_archive])
    assert young.is_dir() and still_writing.is_dir()


def test_only_our_names_and_real_directories_are_touched(tmp_path):
    dead = {"pid": 2**22 + 1, "start_time": 1}
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / OWNER_FILE).write_text(json.dumps({**spool_module._identity(), **dead}))
    os.symlink(target, tmp_path / "qilbee-spool-alinkxyz")
    for name in ["qilbee-spool-toolong123", "qilbee-drill-abcdefgh", "other-abcdefgh"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / OWNER_FILE).write_text((target / OWNER_FILE).read_text())
        _age(tmp_path / name, 2 * DAY)
    stale = new_spool(tmp_path)
    _rewrite_record(stale, **dead)
    assert clean_stale_spools(tmp_path) == [stale]  # only it: the look-alikes stay
    assert (target / OWNER_FILE).is_file() and len(os.listdir(tmp_path)) == 5


def test_remove_tree_is_not_recursive_and_never_follows_links(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("p")
    root = tmp_path / "deep"
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(1500):  # deeper than Python's recursion limit
            os.mkdir("d", dir_fd=fd)
            fd, old = os.open("d", os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        os.symlink(keep, "link", dir_fd=fd)
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)
    try:
        remove_tree(root)
        assert not root.exists() and (keep / "precious").read_text() == "p"
        remove_tree(root)  # already gone: nothing to do
    finally:
        # Left behind, a tree this deep breaks pytest's own (recursive) clean-up of old temp dirs.
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


def test_two_runs_cleaning_at_once_both_finish(tmp_path, caplog):
    stale = []
    for _ in range(4):
        spool = new_spool(tmp_path)
        for d in range(20):
            (spool / f"d{d}" / "e").mkdir(parents=True)
            for f in range(20):
                (spool / f"d{d}" / "e" / f"{f}.zst").write_bytes(b"b")
        _rewrite_record(spool, pid=2**22 + 1)
        stale.append(spool)
    results: list[list[Path]] = [[], []]
    barrier = threading.Barrier(2)

    def clean(slot: int) -> None:
        barrier.wait()
        results[slot] = clean_stale_spools(tmp_path)

    with caplog.at_level(logging.WARNING, logger="qilbee_backup.spool"):
        workers = [threading.Thread(target=clean, args=(slot,)) for slot in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
    assert sorted(set(results[0]) | set(results[1])) == sorted(stale)
    assert os.listdir(tmp_path) == [] and not caplog.records


def test_a_removal_cut_short_keeps_the_record_for_the_next_run(tmp_path, monkeypatch):
    spool = new_spool(tmp_path)
    for name in ("a", "b"):
        (spool / name).mkdir()
    _rewrite_record(spool, pid=2**22 + 1)
    real = spool_module.remove_tree
    calls = []

    def fail_second(path):
        calls.append(path)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", str(path))
        real(path)

    monkeypatch.setattr(spool_module, "remove_tree", fail_second)
    assert clean_stale_spools(tmp_path) == []
    assert (spool / OWNER_FILE).is_file() and len(os.listdir(spool)) == 2
    monkeypatch.setattr(spool_module, "remove_tree", real)
    assert clean_stale_spools(tmp_path) == [spool] and not spool.exists()

