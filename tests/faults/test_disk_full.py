"""Disk full during a restore: the target's parent is a small ext4 filesystem (a loop-mounted image).

Two ways to run out of space: the disk is already too full when the restore starts (ballast leaves
half the backup's size free), and the disk fills up while the restore writes (ballast takes all
but 256 KiB as soon as the restore's first file appears beside the target). Either way the restore
fails with one line, the target stays as it was (absent or empty), no file or space is left behind,
and once the ballast is gone the same restore succeeds, byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from tests.faults.harness import RawRepo, check_restore, leftovers, tree

MiB = 1024 * 1024
IMAGE_SIZE = 192 * MiB  # the restore asks for the backup's size plus a margin (64 MiB today) before it starts


def _free(path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _ballast(path, leave: int) -> None:
    """Fill the filesystem of path's directory until `leave` bytes are free."""
    with open(path, "ab") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, os.fstat(f.fileno()).st_size + _free(path.parent) - leave))


@pytest.fixture
def small_disk(tmp_path):
    """An ext4 image of IMAGE_SIZE loop-mounted at tmp_path/small (no reserved blocks), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    image, mountpoint = tmp_path / "small.img", tmp_path / "small"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(IMAGE_SIZE)
    for command in (["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], ["mount", "-o", "loop", str(image), str(mountpoint)]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a small filesystem: {' '.join(command[:2])}: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)])


def _fill_when_restore_writes(parent, target, ballast, stop: threading.Event, landed: list) -> None:
    """Fill the disk the moment a new entry (the restore's work) appears beside the target."""
    before = set(os.listdir(parent))
    while not stop.is_set():
        if any(name != target.name and not name.endswith(".lock") for name in set(os.listdir(parent)) - before):
            _ballast(ballast, leave=256 * 1024)
            landed.append(_free(parent))  # what is free with the restore's work so far on the disk
            return
        time.sleep(0.0005)


def test_restore_onto_a_full_disk(small_disk, source, cli, trials, tmp_path):
    repo = RawRepo(str(tmp_path / "repo"))
    source.grow()
    run = cli(*source.backup(repo))
    assert run.code == 0, str(run)
    backup_id = repo.backup_ids()[-1]
    snapshot = source.snapshot(repo.manifest(backup_id))
    needed = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
    target, ballast = small_disk / "restores" / "data", small_disk / "ballast"
    restore = ("restore", "--repo", repo.url, "--backup", backup_id, "--data-dir", str(target), "--no-check")

    for when, state in (("already full", "absent"), ("fills up while it writes", "empty")):
        with trials.trial(f"restore, disk {when} (target {state})") as trial:
            target.parent.mkdir()
            if state == "empty":
                target.mkdir()
            as_it_was, beside = tree(target), set(os.listdir(target.parent))
            stop, landed = threading.Event(), []
            if when == "already full":
                _ballast(ballast, leave=needed // 2)
            else:
                filler = threading.Thread(target=_fill_when_restore_writes, args=(target.parent, target, ballast, stop, landed))
                filler.start()
            free = _free(small_disk)
            run = cli(*restore)
            stop.set()
            if when != "already full":
                filler.join()
                trial.notes.append(f"filled in time: {run.error_line[-90:]}" if landed else "the fill came too late: the restore had finished")
                free = landed[0] if landed else free
            if landed or when == "already full":
                trial.contract(run)
                trial.check(run.code == 1, f"{run} -- a restore onto a full disk must fail")
                trial.check(tree(target) == as_it_was, f"the failed restore changed its target: now {len(tree(target) or {})} files")
                trial.check(not leftovers(target, beside), f"the failed restore left {leftovers(target, beside)} beside its target")
                trial.check(_free(small_disk) >= free, f"the failed restore left {free - _free(small_disk)} bytes in use")
                ballast.unlink()
                run = cli(*restore)
            check_restore(trial, run, target, snapshot)
            shutil.rmtree(target.parent)
            ballast.unlink(missing_ok=True)
    trials.assert_all_passed()
