#!/usr/bin/env python3
"""What encryption costs: our four commands, end to end as a user types them (direct, no Prefect
server), on an encrypted repository and on an unencrypted one (--insecure-no-encryption), in
alternation, several rounds, one moto_server on loopback; median of each, and the cost in percent.

    .venv/bin/python benchmarks/bench_encryption.py [--size 1024] [--rounds 3] [--workdir /tmp/qilbee-bench]

Each round starts from the cached database (benchmarks/make_database.py), backs it up into a new
repository of each kind (each with its own hash cache), grows it by 5% and backs it up again, lists,
and restores the latest into a fresh directory (checked identical to its checkpoint, untimed). Which
kind goes first alternates from round to round (the first command after the emulator starts is
seen to be slower by ~0.15 s, whichever kind it is), so neither is favoured; an untimed backup
before the first round takes the run's first-command costs. A median over a few rounds is what makes a 10% figure mean something on a 2-core machine whose own
noise is about 5%.

Not a timed test: figures for the issue notes (issue 12's "encryption costs ≤ 10% of the backup and
restore figures").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_commands import QILBEE  # noqa: E402
from common import (  # noqa: E402
    KEEP_SNAPSHOTS,
    PY,
    REPO_ROOT,
    bench_env,
    cached_database,
    check_identical,
    copy_tree,
    emulator,
    fresh_dir,
    mib,
    moto,
    run_measured,
    tree_digests,
)

KINDS = {"encrypted": [], "unencrypted": ["--insecure-no-encryption"]}
COMMANDS = ("full", "incremental", "restore", "list")
TARGET_PERCENT = 10.0  # of the backup and restore figures


def one_round(number: int, base: Path, s3: str, scratch: Path) -> dict[str, dict[str, dict]]:
    """{kind: {command: {seconds, peak_rss}}} for one round."""
    bucket = f"bench-enc-{number}-{int(time.time())}"
    work = fresh_dir(scratch / f"round-{number}")
    env = bench_env(work, s3, None, bucket)
    subprocess.run(["aws", "s3", "mb", f"s3://{bucket}"], check=True, env=env, capture_output=True)
    live = work / "live"
    copy_tree(base, live)
    order = list(KINDS) if number % 2 else list(reversed(KINDS))
    envs = {kind: dict(env, XDG_CACHE_HOME=str(work / f"cache-{kind}")) for kind in KINDS}
    repos = {kind: f"s3://{bucket}/{kind}" for kind in KINDS}
    cells: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}

    def ours(kind: str, command: str, args: list[str]) -> dict:
        seconds, peak, out = run_measured([*QILBEE, *args, "--json", "--no-prefect"], envs[kind])
        cells[kind][command] = {"seconds": seconds, "peak_rss": peak}
        print(f"round {number} {kind:11} {command:11} {seconds:6.2f} s  {mib(peak)}", file=sys.stderr)
        return json.loads(out)

    def backups(command: str) -> dict[str, Path]:
        snaps = {}
        with emulator(live, work) as source:
            for kind in order:
                result = ours(kind, command, ["backup", "--source", source, "--repo", repos[kind], *KEEP_SNAPSHOTS,
                                              *(KINDS[kind] if command == "full" else [])])
                snaps[kind] = live / "snapshots" / result["snapshot_id"]
        return snaps

    if number == 1:  # untimed: the run's very first backup is slower, whichever kind makes it (seen: +1 s)
        with emulator(live, work) as source:
            run_measured([*QILBEE, "backup", "--source", source, "--repo", f"s3://{bucket}/warm-up", "--json",
                          "--no-prefect"], dict(env, XDG_CACHE_HOME=str(work / "cache-warm-up")))
    backups("full")
    subprocess.run([PY, str(REPO_ROOT / "benchmarks" / "make_database.py"), str(live), "--grow-percent", "5"],
                   check=True, capture_output=True)
    os.sync()  # the growth written back before the timed backups, as copy_tree does
    grown = backups("incremental")
    for kind in order:
        if len(ours(kind, "list", ["list", "--repo", repos[kind]])) != 2:
            raise RuntimeError(f"the {kind} repository does not list 2 backups")
    for kind in order:
        target = work / f"restored-{kind}"
        ours(kind, "restore", ["restore", "--repo", repos[kind], "--backup", "latest", "--data-dir", str(target), "--no-check"])
        check_identical(tree_digests(grown[kind]), target, f"the {kind} restore")
        shutil.rmtree(target)
    shutil.rmtree(work)
    urllib.request.urlopen(urllib.request.Request(f"{s3}/moto-api/reset", method="POST"), timeout=60).read()
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="database size in MiB (default 1024)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="rounds, each kind once per command per round; even, so each kind goes first as often (default 4)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/qilbee-bench"))
    args = ap.parse_args()
    if args.rounds < 2 or args.rounds % 2:
        ap.error("--rounds must be even (each kind goes first in half of them)")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    base = cached_database(workdir, args.size)
    scratch = Path(tempfile.mkdtemp(prefix="encryption-", dir=workdir))
    load = [os.getloadavg()[0]]
    try:
        with moto(scratch) as s3:
            rounds = [one_round(n, base, s3, scratch) for n in range(1, args.rounds + 1)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load.append(os.getloadavg()[0])

    rows = []
    print(f"\n{args.size} MiB, {args.rounds} rounds, direct (no Prefect server); median seconds (each round's in brackets) "
          f"and peak RSS; 1-min load average {load[0]:.1f} → {load[1]:.1f}\n")
    print("| command | encrypted | unencrypted | cost | peak RSS enc / plain |")
    print("|---|---|---|---|---|")
    for command in COMMANDS:
        seconds = {k: [r[k][command]["seconds"] for r in rounds] for k in KINDS}
        peak = {k: max(r[k][command]["peak_rss"] for r in rounds) for k in KINDS}
        med = {k: statistics.median(v) for k, v in seconds.items()}
        cost = 100.0 * (med["encrypted"] - med["unencrypted"]) / med["unencrypted"]
        rows.append({"command": command, "seconds": seconds, "median": med, "cost_percent": cost, "peak_rss": peak})
        each = {k: ", ".join(f"{s:.2f}" for s in v) for k, v in seconds.items()}
        print(f"| {command} | {med['encrypted']:.2f} s ({each['encrypted']}) | {med['unencrypted']:.2f} s "
              f"({each['unencrypted']}) | {cost:+.1f}% | {mib(peak['encrypted'])} / {mib(peak['unencrypted'])} |")
    print()
    for row in rows:
        if row["command"] != "list":
            verdict = "met" if row["cost_percent"] <= TARGET_PERCENT else "missed"
            print(f"encryption costs ≤ {TARGET_PERCENT:.0f}% of {row['command']}: {row['cost_percent']:+.1f}% {verdict}")
    out = workdir / "results-encryption.json"
    out.write_text(json.dumps({"size_mib": args.size, "rounds": rows, "load": load}, indent=2))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
