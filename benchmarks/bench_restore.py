#!/usr/bin/env python3
"""Restore and disaster-recovery benchmark (issue 4): qilbee-backup's restore vs the guide's
`aws s3 cp` + `tar -xzf`, and restic 0.14, all from the same moto_server on loopback, of the
same RocksDB snapshot, in one run; then the time a full `dr` adds beyond its restore.

    .venv/bin/python benchmarks/bench_restore.py [--size 1024] [--workdir /tmp/qilbee-bench] [--rounds 1]

A deterministic database (benchmarks/make_database.py, cached as <workdir>/db-<size>) is served
by the emulator and backed up by our CLI (a Prefect flow run against a Prefect server started
here); the guide's tar.gz archive and a restic repository are made from that same snapshot
(not timed). Then each tool restores into a fresh empty directory, timed end to end with its own
peak RSS, and every restored tree is checked file by file (SHA-256) against the snapshot: a
restore that gives back other bytes fails the benchmark. Last, `qilbee-backup dr` with the process
provider and a hosts-file DNS switch: its RTO minus its restore step is the recovery overhead.
Prints a markdown table and writes results-restore.json in the workdir. Every process started
here is stopped by its PID, and the run's scratch directory is removed (the cached database stays).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    KEEP_SNAPSHOTS,
    PY,
    REPO_ROOT,
    bench_env,
    cached_database,
    check_identical,
    emulator,
    fresh_dir,
    mib,
    moto,
    prefect_server,
    run_measured,
    tree_bytes,
    tree_digests,
)

sys.path.insert(0, str(REPO_ROOT))
from qilbee_backup.provision.base import Instance  # noqa: E402
from qilbee_backup.provision.process import ProcessProvisioner, read_cmdline  # noqa: E402

CLI = [PY, "-m", "qilbee_cli"]
DR_RECORD = "db.bench.test"
GUIDE_ARCHIVE = "qilbee-backup.tar.gz"
TOOLS = ("ours", "guide", "guide-ranged", "restic")


# -- the restores ---------------------------------------------------------------------------------


def restore_ours(env: dict, repo: str, target: Path) -> dict:
    seconds, peak, out = run_measured([*CLI, "restore", "--repo", repo, "--data-dir", str(target), "--no-check", "--json"], env)
    result = json.loads(out)
    return {"seconds": seconds, "peak_rss": peak, "restore_s": result["duration_s"], "bytes_downloaded": result["bytes_downloaded"]}


def restore_guide(env: dict, url: str, target: Path, scratch: Path, ranged: bool) -> dict:
    """The guide's way: fetch the archive, unpack it (two commands, timed as one).

    The baseline fetches it with one GET. The aws CLI's defaults fetch anything over 8 MiB as
    parallel ranged GETs, which is faster on S3 but several times slower on moto_server (it reads
    the whole object for every range), so that variant is measured and shown, not compared with."""
    download = fresh_dir(scratch / "guide-download")
    config = scratch / ("aws-config" if ranged else "aws-config-one-get")
    try:
        cp_s, cp_peak, _ = run_measured(["aws", "s3", "cp", "--quiet", url, "."], dict(env, AWS_CONFIG_FILE=str(config)), cwd=download)
        tar_s, tar_peak, _ = run_measured(["tar", "-xzf", str(download / GUIDE_ARCHIVE), "-C", str(target)], env)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return {"seconds": cp_s + tar_s, "download_s": cp_s, "unpack_s": tar_s, "peak_rss": max(cp_peak, tar_peak)}


def restore_restic(env: dict, target: Path) -> dict:
    # A new host has no restic cache: start each restore without one.
    shutil.rmtree(env["XDG_CACHE_HOME"], ignore_errors=True)
    seconds, peak, _ = run_measured(["restic", "restore", "latest", "--target", str(target)], env)
    return {"seconds": seconds, "peak_rss": peak}


def timed_restores(env: dict, repo: str, guide_url: str, expected: dict[str, str], scratch: Path, rounds: int) -> dict:
    """Each tool restores `rounds` times (order rotated each round); every restore is checked."""
    runs: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
    for r in range(rounds):
        for tool in TOOLS[r % len(TOOLS):] + TOOLS[:r % len(TOOLS)]:
            target = fresh_dir(scratch / f"restored-{tool}")
            if tool == "ours":
                run = restore_ours(env, repo, target)
            elif tool.startswith("guide"):
                run = restore_guide(env, guide_url, target, scratch, ranged=tool == "guide-ranged")
            else:
                run = restore_restic(env, target)
            check_identical(expected, target, tool)
            shutil.rmtree(target)
            runs[tool].append(run)
            print(f"round {r + 1}: {tool} restored in {run['seconds']:.1f} s (checked identical)", file=sys.stderr)
    return {tool: {"median_s": statistics.median(x["seconds"] for x in runs[tool]),
                   "peak_rss": max(x["peak_rss"] for x in runs[tool]), "runs": runs[tool]} for tool in TOOLS}


# -- disaster recovery -----------------------------------------------------------------------------


def stop_instance(info: dict) -> None:
    """Stop the DR's server by the PID in its result; the provisioner signals it only while
    /proc/<pid>/cmdline still names the instance's data directory."""
    port = int(info["url"].rsplit(":", 1)[1].split("/")[0])
    ProcessProvisioner().stop(Instance(provider="process", url=info["url"], data_dir=Path(info["data_dir"]),
                                       port=port, pid=int(info["pid"])))


def stop_servers_under(root: Path) -> list[int]:
    """When `dr` failed before printing its result: stop any server it left running on a data
    directory inside our own scratch root (found by that unique path, stopped by PID)."""
    stopped = []
    prefix = str(root) + os.sep
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for arg in read_cmdline(int(entry.name)) or []:
            if arg.startswith(prefix):
                data_dir = Path(arg)
                stop_instance({"url": "http://127.0.0.1:0", "data_dir": str(data_dir), "pid": entry.name})
                stopped.append(int(entry.name))
                break
    return stopped


def disaster_recovery(env: dict, repo: str, scratch: Path) -> dict:
    hosts = scratch / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    data_root = fresh_dir(scratch / "dr")
    result = None
    try:
        seconds, peak, out = run_measured([*CLI, "dr", "--repo", repo, "--provider", "process", "--dns", "hosts",
                                           "--record", DR_RECORD, "--hosts-file", str(hosts), "--data-root", str(data_root),
                                           "--json"], env)
        result = json.loads(out)
    finally:
        if result is not None and result.get("instance", {}).get("pid"):
            stop_instance(result["instance"])
        else:
            leftovers = stop_servers_under(data_root)
            if leftovers:
                print(f"stopped DR servers left by a failed run: pids {leftovers}", file=sys.stderr)
    if not any(line.split()[:1] == ["127.0.0.1"] and DR_RECORD in line.split()[1:] for line in hosts.read_text().splitlines()):
        raise RuntimeError(f"dr reported success but {hosts} does not point {DR_RECORD} at 127.0.0.1")
    if not result["integrity"].get("ok"):
        raise RuntimeError(f"dr reported a failed integrity check: {result['integrity']}")
    steps = result["steps"]
    restore_step = next(s["duration_s"] for s in steps if s["name"] == "restore")
    return {"seconds": seconds, "peak_rss": peak, "rto_s": result["rto_s"], "restore_step_s": restore_step,
            "overhead_s": round(result["rto_s"] - restore_step, 3), "steps": steps, "instance": result["instance"]["url"],
            "backup_id": result["backup_id"]}


# -- setup -----------------------------------------------------------------------------------------


def run(size_mib: int, workdir: Path, rounds: int, scratch: Path) -> dict:
    load_at_start = os.getloadavg()
    base = cached_database(workdir, size_mib)
    bucket = f"bench-restore-{size_mib}"
    with ExitStack() as servers:
        s3 = servers.enter_context(moto(scratch))
        api = servers.enter_context(prefect_server(scratch))
        env = bench_env(scratch, s3, api, bucket)
        subprocess.run(["aws", "s3", "mb", f"s3://{bucket}"], check=True, env=env, capture_output=True)
        repo = f"s3://{bucket}/qilbee"

        # 1. Our backup of the database, served by the emulator (its snapshot is what everyone restores).
        live = scratch / "live"
        shutil.copytree(base, live)
        with emulator(live, scratch) as source:
            backup_s, _, out = run_measured([*CLI, "backup", "--source", source, "--repo", repo, *KEEP_SNAPSHOTS, "--json"], env)
        backup = json.loads(out)
        snap = live / "snapshots" / backup["snapshot_id"]
        expected = tree_digests(snap)
        print(f"backed up {len(expected)} files, {mib(tree_bytes(snap))} in {backup_s:.1f} s", file=sys.stderr)

        # 2. The baselines from that same snapshot (their backup side, not timed).
        archive = scratch / GUIDE_ARCHIVE
        subprocess.run(["tar", "-czf", str(archive), "-C", str(snap), "."], check=True)
        guide_url = f"s3://{bucket}/guide/{GUIDE_ARCHIVE}"
        subprocess.run(["aws", "s3", "cp", "--quiet", str(archive), guide_url], check=True, env=env)
        archive_bytes = archive.stat().st_size
        archive.unlink()
        subprocess.run(["restic", "init"], check=True, env=env, capture_output=True)
        subprocess.run(["restic", "backup", "--quiet", "."], check=True, env=env, cwd=snap)  # "." puts the files at the snapshot's root

        # 3. The timed restores, each checked; 4. disaster recovery.
        restores = timed_restores(env, repo, guide_url, expected, scratch, rounds)
        dr = disaster_recovery(env, repo, scratch)
    return {"size_mib": size_mib, "snapshot_files": len(expected), "snapshot_bytes": tree_bytes(snap),
            "stored_bytes": backup.get("bytes_uploaded"), "guide_archive_bytes": archive_bytes, "rounds": rounds,
            "restore": restores, "dr": dr, "cpus": os.cpu_count(),
            "load_avg_at_start": load_at_start, "load_avg_at_end": os.getloadavg()}


# -- report ----------------------------------------------------------------------------------------


def table(r: dict) -> str:
    res, dr = r["restore"], r["dr"]
    ours, guide, ranged, restic = res["ours"], res["guide"], res["guide-ranged"], res["restic"]
    e2e, flow = ours["median_s"], statistics.median(x["restore_s"] for x in ours["runs"])

    def med(tool: dict, key: str) -> float:
        return statistics.median(x[key] for x in tool["runs"])

    def faster(other: float) -> str:
        return f"{other / e2e:.2f}× · {other / flow:.2f}×"

    rounds = f", median of {r['rounds']} rounds" if r["rounds"] > 1 else ""
    met = {True: "met", False: "missed"}
    target = f"target ≥ 3×: {met[guide['median_s'] / e2e >= 3]} end to end, {met[guide['median_s'] / flow >= 3]} for the restore step"
    lines = [
        f"Restore of a {mib(r['snapshot_bytes'])} snapshot ({r['snapshot_files']} files) from moto_server on loopback into an "
        f"empty directory; every restored tree checked identical (SHA-256 of every file){rounds}. "
        f"\"ours is\": the other's time / ours, end to end · restore step in the flow.",
        "",
        "| tool | time | peak RSS | ours is |",
        "|---|---|---|---|",
        f"| qilbee-backup `restore --no-check` | {e2e:.1f} s end to end; the restore in the flow {flow:.1f} s "
        f"(the rest: CLI, Prefect import and flow run) | {mib(ours['peak_rss'])} | — |",
        f"| guide: `aws s3 cp` (one GET) + `tar -xzf`, {mib(r['guide_archive_bytes'])} archive | {guide['median_s']:.1f} s "
        f"({med(guide, 'download_s'):.1f} s download + {med(guide, 'unpack_s'):.1f} s unpack) | {mib(guide['peak_rss'])} "
        f"| {faster(guide['median_s'])} ({target}) |",
        f"| (guide with the aws CLI's ranged GETs: slow on moto only, not compared) | {ranged['median_s']:.1f} s "
        f"({med(ranged, 'download_s'):.1f} s download + {med(ranged, 'unpack_s'):.1f} s unpack) | {mib(ranged['peak_rss'])} | {faster(ranged['median_s'])} |",
        f"| restic 0.14 `restore latest` (no cache) | {restic['median_s']:.1f} s | {mib(restic['peak_rss'])} | {faster(restic['median_s'])} |",
        "",
        f"Disaster recovery (`dr --provider process --dns hosts`): RTO {dr['rto_s']:.1f} s, of which restore "
        f"{dr['restore_step_s']:.1f} s → overhead **{dr['overhead_s']:.1f} s** (target ≤ 10 s: "
        f"{met[dr['overhead_s'] <= 10]}); CLI end to end {dr['seconds']:.1f} s, peak RSS {mib(dr['peak_rss'])}.",
        "Steps: " + " · ".join(f"{x['name']} {x['duration_s']:.2f} s" for x in dr["steps"]),
        f"(machine: {r['cpus']} CPUs, 1-min load average {r['load_avg_at_start'][0]:.1f} at the start, "
        f"{r['load_avg_at_end'][0]:.1f} at the end: figures are indicative)",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="database size in MiB (default 1024)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/qilbee-bench"), help="holds the cached databases and the results")
    ap.add_argument("--rounds", type=int, default=1, help="restores per tool; the table shows the median (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the run's scratch directory (logs, repositories) for a look")
    args = ap.parse_args()
    if args.rounds < 1 or args.size < 1:
        ap.error("--size and --rounds must be at least 1")
    missing = [tool for tool in ("aws", "restic", "tar") if not shutil.which(tool)]
    if missing:
        sys.exit(f"needs {', '.join(missing)} on PATH (restic: apt-get install restic; aws: pip install awscli)")
    # A SIGTERM unwinds like Ctrl-C, so the servers and the scratch directory are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"restore-{args.size}-", dir=args.workdir))
    try:
        result = run(args.size, args.workdir.resolve(), args.rounds, scratch.resolve())
    except BaseException:
        print(f"benchmark failed; its logs are in {scratch}" if args.keep else "benchmark failed; rerun with --keep to keep its logs",
              file=sys.stderr)
        raise
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    (args.workdir / "results-restore.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
