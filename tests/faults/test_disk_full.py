"""Disk full during a restore: the target's parent is a small tmpfs, filled with ballast until only half
the backup fits. The restore fails with one line, the target stays as it was (absent or empty), no
space or file is left behind, and once the ballast is gone the same restore succeeds, byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.faults.harness import RawRepo, check_restore, leftovers, tree

MiB = 1024 * 1024


def _free(path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 32 MiB at tmp_path/small, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={32 * MiB}", "qilbee-faults", str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)])


def test_restore_onto_a_full_disk(small_disk, source, cli, trials, tmp_path):
    repo = RawRepo(str(tmp_path / "repo"))
    source.grow()
    run = cli("backup", "--source", source.url, "--repo", repo.url, "--kind", "daily")
    assert run.code == 0, run
    backup_id = repo.backup_ids()[-1]
    snapshot = source.snapshot(repo.manifest(backup_id))
    needed = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
    assert needed < 16 * MiB, f"the snapshot ({needed} bytes) does not fit the small disk"
    target = small_disk / "restores" / "data"
    restore = ("restore", "--repo", repo.url, "--backup", backup_id, "--data-dir", str(target), "--no-check")

    for state in ("absent", "empty"):
        with trials.trial(f"restore onto a full disk (target {state})") as trial:
            target.parent.mkdir()
            if state == "empty":
                target.mkdir()
            ballast = small_disk / "ballast"
            with open(ballast, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, _free(small_disk) - needed // 2)
            as_it_was, beside, free = tree(target), set(os.listdir(target.parent)), _free(small_disk)

            run = cli(*restore)
            trial.contract(run)
            trial.check(run.code == 1, f"{run} -- a restore onto a full disk must fail")
            trial.check(tree(target) == as_it_was, f"the failed restore changed its target: now {len(tree(target) or {})} files")
            trial.check(not leftovers(target, beside), f"the failed restore left {leftovers(target, beside)} beside its target")
            trial.check(_free(small_disk) >= free, f"the failed restore left {free - _free(small_disk)} bytes in use")

            ballast.unlink()
            check_restore(trial, cli(*restore), target, snapshot)
            shutil.rmtree(target.parent)
    trials.assert_all_passed()
