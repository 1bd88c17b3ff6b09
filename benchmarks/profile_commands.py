#!/usr/bin/env python3
"""Where a command's time goes, step by step: our backup (full, then after 5% growth), restore and
list, each run once end to end as a user types it (direct, no Prefect server) under cProfile, on
the benchmark's database, against one moto_server on loopback. Prints, per command, the wall time
and the cumulative time of each part: Python start-up and imports, the KDF, the S3 client, each
step of the runbook (snapshot, copy, upload, verify, release, restore, ...).

    .venv/bin/python benchmarks/profile_commands.py [--size 1024] [--workdir /tmp/qilbee-bench]

Not a timed test: figures for the issue notes, to show what stands between a figure and its target.
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, REPO_ROOT, bench_env, cached_database, copy_tree, emulator, fresh_dir, moto  # noqa: E402

# (label, file suffix, function name): the parts reported, by their cumulative time in the profile.
PARTS = [
    ("KDF (scrypt, once)", "qilbee_backup/crypto.py", "_kek"),
    ("open repositories (S3 client, config, keys)", "qilbee_backup/repository.py", "open_repository"),
    ("prepare (source health, repositories)", "qilbee_backup/backup.py", "prepare"),
    ("step snapshot", "tasks/backup.py", "snapshot"),
    ("step copy (scan, hash, compress, send)", "tasks/backup.py", "copy"),
    ("step upload (rest + commit)", "tasks/backup.py", "upload"),
    ("step verify", "tasks/maintenance.py", "verify"),
    ("step release-checkpoint", "tasks/backup.py", "release_checkpoint_step"),
    ("restore (fetch, check, write, fsync)", "qilbee_backup/restorer.py", "restore_backup"),
    ("catalog (read every manifest)", "qilbee_backup/repository.py", "catalog"),
]


def parts_of(profile: Path) -> dict[str, float]:
    stats = pstats.Stats(str(profile)).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    found: dict[str, float] = {}
    for label, suffix, name in PARTS:
        cumulative = [ct for (file, _, func), (_, _, _, ct, callers) in stats.items()
                      if func == name and file.endswith(suffix)]
        if cumulative:
            found[label] = max(cumulative)
    return found


def run(args: list[str], env: dict, profile: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([PY, "-m", "cProfile", "-o", str(profile), "-m", "qilbee_cli", *args], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="database size in MiB (default 1024)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/qilbee-bench"))
    ap.add_argument("--plain", action="store_true", help="an unencrypted repository (default: encrypted)")
    ap.add_argument("--keep", action="store_true", help="keep the profiles (*.prof) for pstats; their directory is printed")
    args = ap.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    base = cached_database(workdir, args.size)
    scratch = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
    try:
        live = scratch / "live"
        copy_tree(base, live)
        with moto(scratch) as s3:
            env = bench_env(scratch, s3, None, "profile")
            subprocess.run(["aws", "s3", "mb", "s3://profile"], env=env, check=True, capture_output=True)
            repo = ["--repo", "s3://profile/q"]
            rows = []
            with emulator(live, scratch) as url:
                backup = ["backup", "--source", url, *repo, "--no-prefect", "--json",
                          *(["--insecure-no-encryption"] if args.plain else [])]
                rows.append(("full backup", run(backup, env, scratch / "full.prof"), scratch / "full.prof"))
            subprocess.run([PY, str(REPO_ROOT / "benchmarks" / "make_database.py"), str(live), "--grow-percent", "5"],
                           check=True, capture_output=True)
            with emulator(live, scratch) as url:
                backup[2] = url
                rows.append(("incremental", run(backup, env, scratch / "inc.prof"), scratch / "inc.prof"))
            target = fresh_dir(scratch / "restored") / "data"
            rows.append(("restore", run(["restore", *repo, "--data-dir", str(target), "--no-check", "--no-prefect", "--json"],
                                        env, scratch / "restore.prof"), scratch / "restore.prof"))
            rows.append(("list", run(["list", *repo, "--json"], env, scratch / "list.prof"), scratch / "list.prof"))
        print(f"{args.size} MiB, {'unencrypted' if args.plain else 'encrypted'}, direct; seconds (cumulative, under cProfile)")
        for command, wall, profile in rows:
            parts = parts_of(profile)
            print(f"\n{command}: {wall:.2f} s end to end (profiled)")
            for label, seconds in parts.items():
                print(f"  {label:48} {seconds:6.2f} s")
            outer = sum(v for k, v in parts.items() if not k.startswith("KDF"))  # the KDF runs inside open/prepare
            print(f"  {'the rest: start-up, imports, flow glue':48} {wall - outer:6.2f} s")
    finally:
        if args.keep:
            for leftover in ("live", "restored"):
                shutil.rmtree(scratch / leftover, ignore_errors=True)
            print(f"\nprofiles kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
