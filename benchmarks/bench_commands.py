#!/usr/bin/env python3
"""Command benchmark: every command as a user types it, end to end, in one run:

    | command                     | ours, direct | ours, Prefect server | restic 0.14      | guide                    |
    | full backup                 | backup       | backup               | restic backup    | tar -czf + aws s3 cp     |
    | incremental (+5% grown)     | backup       | backup               | restic backup    | —                        |
    | restore latest              | restore      | restore              | restic restore   | aws s3 cp + tar -xzf     |
    | list                        | list         | list                 | restic snapshots | —                        |

    .venv/bin/python benchmarks/bench_commands.py [--sizes 256,1024] [--modes direct,prefect]
        [--workdir /tmp/qilbee-bench] [--ours-args "--some-flag value"] [--keep]

"direct" is our CLI with --no-prefect, no PREFECT_API_URL and an empty PREFECT_HOME (no Prefect
start-up, nothing recorded); "prefect" is the same command with --prefect against a Prefect server
started here (a flow run recorded in the server), warmed by one throw-away flow run before the
first timed one; each mode is checked to have run as it says (flow runs counted in the server, no
Prefect database made by a direct run), and each flow run is followed by a few seconds' pause while
the server writes its events in the background (untimed, so no other command shares the CPUs
with that). Each mode has its own repository (s3://<bucket>/qilbee-direct, .../qilbee-prefect)
and its own local cache, so each does its own full and incremental backup. Everything talks to one
moto_server on loopback. --ours-args (split like a shell would) is appended to every one of our
backup, list and restore commands (e.g. encryption options).

For each size: a deterministic database (benchmarks/make_database.py, cached as <workdir>/db-<size>)
is copied and served by the emulator; each mode backs it up (ours takes the server checkpoint
itself); restic and the guide back up the checkpoint the first mode took. The database grows by 5%
and each mode and restic back up again. Then each lists its backups, and each restores the latest
into a fresh directory; every restored tree is compared file by file (SHA-256) with the checkpoint
it came from, untimed, and the run fails on any difference. The guide has no incremental: its
"latest" is a second full archive of the grown checkpoint, made untimed for the restore.

Each cell is wall seconds and peak RSS (os.wait4: the largest process of the command's tree; for
the guide's two commands, the larger of the two). Prints a markdown table with restic ÷ ours (≥ 1
means we are faster) and the Prefect overhead (prefect − direct), then the issue's targets as
met/missed, and writes results-commands.json in the workdir. Every process started here is stopped
by its PID; the run's scratch directory is removed unless --keep (the cached databases stay).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
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
    prefect_server,
    run_measured,
    tree_bytes,
    tree_digests,
)

# What a user types: the console script when installed next to this Python, else the module.
_SCRIPT = Path(PY).with_name("qilbee-backup")
QILBEE = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "qilbee_cli"]
MODES = ("direct", "prefect")
COMMANDS = {  # key → (label, restic's command)
    "full": ("full backup", "restic backup"),
    "incremental": ("incremental (+5% grown)", "restic backup"),
    "restore": ("restore latest", "restic restore latest"),
    "list": ("list", "restic snapshots"),
}
GUIDE_FULL, GUIDE_LATEST = "guide-full.tar.gz", "guide-latest.tar.gz"
# The Prefect server writes a flow run's events in the background, in batches every 5 s (its event
# persister's flush interval): after each flow run, wait for that, so the next timed command (ours
# or another tool's) does not share the 2 cores with it.
PREFECT_SETTLE_S = 6.0


@dataclass
class Bench:
    """What the whole run shares: the servers, the modes, our extra arguments."""

    s3: str
    api: str | None
    modes: list[str]
    ours_args: list[str]
    plain: bool = False  # our repositories unencrypted (backup --insecure-no-encryption)
    prefect_warm: bool = False

    def args_for(self, command: str) -> list[str]:
        return [*self.ours_args, *(["--insecure-no-encryption"] if self.plain and command == "backup" else [])]


@dataclass
class Size:
    """One database size: its scratch directory, bucket, and each tool's environment and repository."""

    mib: int
    scratch: Path
    bucket: str
    env: dict[str, dict] = field(default_factory=dict)  # direct, prefect, restic, guide
    repo: dict[str, str] = field(default_factory=dict)  # mode → s3://bucket/qilbee-<mode>


# -- each tool's commands ------------------------------------------------------------------------------


def completed_flow_runs(api: str) -> int:
    body = json.dumps({"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).encode()
    request = urllib.request.Request(f"{api}/flow_runs/count", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.read())


def ours(b: Bench, s: Size, mode: str, args: list[str]) -> tuple[dict, Any]:
    """One of our commands in a mode: ({seconds, peak_rss}, its --json result). Checked (untimed) to have
    run as the mode says: with a Prefect server, backup and restore each add one completed flow run (the
    flow runs a command made are kept in its cell); direct, no Prefect database is made (an ephemeral
    Prefect server would make one in PREFECT_HOME)."""
    flag = "--prefect" if mode == "prefect" else "--no-prefect"
    before = completed_flow_runs(b.api) if mode == "prefect" else 0
    seconds, peak, out = run_measured([*QILBEE, *args, "--json", flag, *b.args_for(args[0])], s.env[mode])
    cell = {"seconds": seconds, "peak_rss": peak}
    if mode == "prefect":
        cell["flow_runs"] = completed_flow_runs(b.api) - before
        if args[0] != "list" and cell["flow_runs"] != 1:
            raise RuntimeError(f"`{args[0]} --prefect` made {cell['flow_runs']} completed flow runs in the Prefect server, "
                               "expected 1")
        if cell["flow_runs"]:
            time.sleep(PREFECT_SETTLE_S)
    else:
        made = list(Path(s.env[mode]["PREFECT_HOME"]).rglob("*.db"))
        if made:
            raise RuntimeError(f"`{args[0]} --no-prefect` made a Prefect database: {made}")
    return cell, json.loads(out)


def warm_prefect(b: Bench, s: Size, source: str) -> None:
    """Once per server, before the first timed flow run: one throw-away flow run (a backup to its own
    prefix, with its own cache, deleting the checkpoint it took) pays the server's first-run costs
    (its database pages, the flow's registration) so no timed run does."""
    if b.prefect_warm:
        return
    env = dict(s.env["prefect"], XDG_CACHE_HOME=str(s.scratch / "cache-warmup"))
    t0 = time.perf_counter()
    run_measured([*QILBEE, "backup", "--source", source, "--repo", f"s3://{s.bucket}/prefect-warmup", "--json", "--prefect",
                  *b.args_for("backup")], env)
    b.prefect_warm = True
    time.sleep(PREFECT_SETTLE_S)
    print(f"warmed the Prefect server with one flow run ({time.perf_counter() - t0:.1f} s, not counted)", file=sys.stderr)


def ours_backup(b: Bench, s: Size, mode: str, source: str, live: Path) -> tuple[dict, Path]:
    """Our backup end to end (it takes the checkpoint itself; kept for the others and the checks)."""
    if mode == "prefect":
        warm_prefect(b, s, source)
    cell, result = ours(b, s, mode, ["backup", "--source", source, "--repo", s.repo[mode], *KEEP_SNAPSHOTS])
    snap = live / "snapshots" / result["snapshot_id"]
    if not snap.is_dir():
        raise RuntimeError(f"{mode} backup reported checkpoint {result['snapshot_id']} but {snap} is not there")
    cell.update(uploaded=result["bytes_uploaded"], flow_s=result["duration_s"])
    return cell, snap


def restic_backup(s: Size, snap: Path) -> dict:
    # restic finds its parent snapshot by path: show it each checkpoint at the same path (hard
    # links, no copy), and back up "." from there so the files sit at the snapshot's root.
    stage = s.scratch / "restic-view"
    shutil.rmtree(stage, ignore_errors=True)
    subprocess.run(["cp", "-al", str(snap), str(stage)], check=True)
    seconds, peak, out = run_measured(["restic", "backup", "--json", "."], s.env["restic"], cwd=stage)
    summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line]
    cell = {"seconds": seconds, "peak_rss": peak}
    if summary:
        cell.update({k: summary[-1].get(k) for k in ("data_added", "files_new", "files_changed", "files_unmodified")})
        cell["uploaded"] = cell.pop("data_added")
    return cell


def guide_backup(s: Size, snap: Path, name: str) -> dict:
    """The guide's backup: tar -czf the checkpoint, aws s3 cp the archive (the CLI's default settings)."""
    archive = s.scratch / name
    env = s.env["guide"]
    tar_s, tar_peak, _ = run_measured(["tar", "-czf", str(archive), "-C", str(snap), "."], env)
    cp_s, cp_peak, _ = run_measured(["aws", "s3", "cp", "--quiet", str(archive), f"s3://{s.bucket}/guide/{name}"], env)
    size = archive.stat().st_size
    archive.unlink()
    return {"seconds": tar_s + cp_s, "peak_rss": max(tar_peak, cp_peak), "tar_s": tar_s, "upload_s": cp_s, "uploaded": size}


def guide_restore(s: Size, target: Path) -> dict:
    """The guide's restore: aws s3 cp the archive down (one GET: the aws CLI's ranged GETs are several
    times slower on moto_server only, see bench_restore.py), then tar -xzf it."""
    download = fresh_dir(s.scratch / "guide-download")
    one_get = dict(s.env["guide"], AWS_CONFIG_FILE=str(s.scratch / "aws-config-one-get"))
    try:
        cp_s, cp_peak, _ = run_measured(["aws", "s3", "cp", "--quiet", f"s3://{s.bucket}/guide/{GUIDE_LATEST}", "."],
                                        one_get, cwd=download)
        tar_s, tar_peak, _ = run_measured(["tar", "-xzf", str(download / GUIDE_LATEST), "-C", str(fresh_dir(target))],
                                          s.env["guide"])
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return {"seconds": cp_s + tar_s, "peak_rss": max(cp_peak, tar_peak), "download_s": cp_s, "unpack_s": tar_s}


# -- one size, every command -------------------------------------------------------------------------


def setup_size(b: Bench, size_mib: int, scratch: Path) -> Size:
    bucket = f"bench-cmd-{size_mib}-{int(time.time())}"
    s = Size(size_mib, fresh_dir(scratch / f"size-{size_mib}"), bucket)
    direct = bench_env(s.scratch, b.s3, None, bucket)  # no PREFECT_API_URL, an empty PREFECT_HOME
    # Each mode and restic get their own cache (ours: the hash cache; restic: its repository cache),
    # so no run reuses what another mode computed; each keeps its own from full to incremental.
    s.env["direct"] = dict(direct, XDG_CACHE_HOME=str(s.scratch / "cache-direct"))
    if b.api:
        s.env["prefect"] = dict(direct, PREFECT_API_URL=b.api, PREFECT_HOME=str(fresh_dir(s.scratch / "prefect-client")),
                                XDG_CACHE_HOME=str(s.scratch / "cache-prefect"))
    s.env["restic"] = dict(direct, XDG_CACHE_HOME=str(s.scratch / "cache-restic"))
    s.env["guide"] = direct
    s.repo = {mode: f"s3://{bucket}/qilbee-{mode}" for mode in b.modes}
    subprocess.run(["aws", "s3", "mb", f"s3://{bucket}"], check=True, env=direct, capture_output=True)
    subprocess.run(["restic", "init"], check=True, env=s.env["restic"], capture_output=True)
    return s


def run_size(b: Bench, workdir: Path, size_mib: int, scratch: Path) -> dict:
    base = cached_database(workdir, size_mib)
    s = setup_size(b, size_mib, scratch)
    live = s.scratch / "live"
    copy_tree(base, live)
    ref = b.modes[0]  # restic and the guide back up the checkpoint this mode's backup took
    row: dict[str, Any] = {"size_mib": size_mib, "load_avg_at_start": os.getloadavg()}

    def done(command: str, tool: str, cell: dict) -> None:
        row.setdefault(command, {})[tool] = cell
        print(f"{size_mib} MiB {command} {tool}: {cell['seconds']:.2f} s, peak RSS {mib(cell['peak_rss'])}", file=sys.stderr)

    # 1. Full backup of the database as the emulator serves it.
    full: dict[str, Path] = {}
    with emulator(live, s.scratch) as source:
        for mode in b.modes:
            cell, full[mode] = ours_backup(b, s, mode, source, live)
            done("full", mode, cell)
    row["snapshot_bytes"], row["snapshot_files"] = tree_bytes(full[ref]), sum(1 for p in full[ref].rglob("*") if p.is_file())
    done("full", "restic", restic_backup(s, full[ref]))
    done("full", "guide", guide_backup(s, full[ref], GUIDE_FULL))

    # 2. Grow by 5% (the emulator holds the database's lock: grow it between two runs of the server), back up again.
    subprocess.run([PY, str(REPO_ROOT / "benchmarks" / "make_database.py"), str(live), "--grow-percent", "5"], check=True,
                   capture_output=True)
    os.sync()  # the growth written back before the timed backups, as copy_tree does
    grown: dict[str, Path] = {}
    with emulator(live, s.scratch) as source:
        for mode in b.modes:
            cell, grown[mode] = ours_backup(b, s, mode, source, live)
            done("incremental", mode, cell)
    row["grown_bytes"] = tree_bytes(grown[ref]) - row["snapshot_bytes"]
    cell = restic_backup(s, grown[ref])
    if not (cell.get("files_changed") or cell.get("files_unmodified")):
        raise RuntimeError(f"restic's second backup found no parent snapshot (every file new): {cell}")
    done("incremental", "restic", cell)
    # The guide's only way to a grown "latest": a second full archive (kept in the results, not in the table).
    row["guide_full_again"] = guide_backup(s, grown[ref], GUIDE_LATEST)

    # 3. List: ours is read-only (the flow runs it makes, if any, are counted); restic keeps the cache its backups left.
    for mode in b.modes:
        cell, result = ours(b, s, mode, ["list", "--repo", s.repo[mode]])
        if len(result) != 2:
            raise RuntimeError(f"{mode} list shows {len(result)} backups, expected 2: {result}")
        done("list", mode, cell)
    seconds, peak, out = run_measured(["restic", "snapshots", "--json"], s.env["restic"])
    if len(json.loads(out)) != 2:
        raise RuntimeError(f"restic snapshots shows {len(json.loads(out))} snapshots, expected 2")
    done("list", "restic", {"seconds": seconds, "peak_rss": peak})

    # 4. Restore the latest into a fresh directory, each checked identical to the checkpoint it came from (untimed).
    expected = {mode: tree_digests(grown[mode]) for mode in b.modes}
    for mode in b.modes:
        target = s.scratch / f"restored-{mode}"
        shutil.rmtree(target, ignore_errors=True)  # missing: our restore creates it
        cell, result = ours(b, s, mode, ["restore", "--repo", s.repo[mode], "--backup", "latest", "--data-dir", str(target),
                                         "--no-check"])
        cell.update(downloaded=result.get("bytes_downloaded"), flow_s=result.get("duration_s"))
        check_identical(expected[mode], target, f"our restore ({mode})")
        shutil.rmtree(target)
        done("restore", mode, cell)
    # A new host has no restic cache: restore without the one the backups left.
    shutil.rmtree(s.env["restic"]["XDG_CACHE_HOME"], ignore_errors=True)
    target = fresh_dir(s.scratch / "restored-restic")
    seconds, peak, _ = run_measured(["restic", "restore", "latest", "--target", str(target)], s.env["restic"])
    check_identical(expected[ref], target, "restic restore")
    shutil.rmtree(target)
    done("restore", "restic", {"seconds": seconds, "peak_rss": peak})
    target = s.scratch / "restored-guide"
    cell = guide_restore(s, target)
    check_identical(expected[ref], target, "the guide's restore")
    shutil.rmtree(target)
    done("restore", "guide", cell)

    row["load_avg_at_end"] = os.getloadavg()
    shutil.rmtree(live)
    shutil.rmtree(s.scratch / "restic-view", ignore_errors=True)
    # Empty moto between sizes, so the next size does not run against a server holding this one's objects.
    urllib.request.urlopen(urllib.request.Request(f"{b.s3}/moto-api/reset", method="POST"), timeout=60).read()
    return row


# -- report --------------------------------------------------------------------------------------------


def cell_text(c: dict | None) -> str:
    return f"{c['seconds']:.2f} s · {mib(c['peak_rss'])}" if c else "—"


def ratio(row: dict, command: str, mode: str) -> float | None:
    cells = row[command]
    return cells["restic"]["seconds"] / cells[mode]["seconds"] if mode in cells else None


def table(rows: list[dict], modes: list[str]) -> str:
    out = ["| database | command | ours, direct | ours, Prefect server | restic 0.14 | guide | restic ÷ ours, direct "
           "| restic ÷ ours, Prefect | Prefect − direct |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for command, (label, restic_label) in COMMANDS.items():
            cells = r[command]
            db = f"{r['size_mib']} MiB ({mib(r['snapshot_bytes'])}, {r['snapshot_files']} files)" if command == "full" else \
                f"+{mib(r['grown_bytes'])} ({r['grown_bytes'] / r['snapshot_bytes']:+.0%})" if command == "incremental" else ""
            ratios = [f"{x:.2f}×" if (x := ratio(r, command, m)) else "—" for m in MODES]
            overhead = (f"{cells['prefect']['seconds'] - cells['direct']['seconds']:+.2f} s"
                        if "direct" in cells and "prefect" in cells else "—")
            out.append(f"| {db} | {label} (restic: `{restic_label}`) | {cell_text(cells.get('direct'))} "
                       f"| {cell_text(cells.get('prefect'))} | {cell_text(cells['restic'])} | {cell_text(cells.get('guide'))} "
                       f"| {ratios[0]} | {ratios[1]} | {overhead} |")
    return "\n".join(out)


# The targets. Each: (text, needs these modes, value of a size's row, its text, met?).
Target = tuple[str, tuple[str, ...], Callable[[dict], float], Callable[[float], str], Callable[[float], bool]]


def targets() -> list[Target]:
    times = lambda x: f"{x:.2f}×"  # noqa: E731
    out: list[Target] = [
        ("no Prefect server: full backup ≥ 2× restic", ("direct",), lambda r: ratio(r, "full", "direct"), times,
         lambda x: x >= 2),
        ("no Prefect server: incremental ≥ 2× restic", ("direct",), lambda r: ratio(r, "incremental", "direct"), times,
         lambda x: x >= 2),
        ("no Prefect server: restore ≥ 1.3× restic", ("direct",), lambda r: ratio(r, "restore", "direct"), times,
         lambda x: x >= 1.3),
        ("no Prefect server: list ≤ 0.5 s", ("direct",), lambda r: r["list"]["direct"]["seconds"], lambda x: f"{x:.2f} s",
         lambda x: x <= 0.5),
        ("no Prefect server: list ≥ 1.5× restic", ("direct",), lambda r: ratio(r, "list", "direct"), times, lambda x: x >= 1.5),
    ]
    for command, (label, _) in COMMANDS.items():
        out.append((f"no Prefect server: peak RSS below restic's, {label}", ("direct",),
                    lambda r, c=command: r[c]["direct"]["peak_rss"] / r[c]["restic"]["peak_rss"],
                    lambda x: f"{x:.2f}× restic's", lambda x: x < 1))
    for command, (label, _) in COMMANDS.items():
        out.append((f"Prefect server: {label} ≤ direct + 1.5 s", ("direct", "prefect"),
                    lambda r, c=command: r[c]["prefect"]["seconds"] - r[c]["direct"]["seconds"],
                    lambda x: f"{x:+.2f} s", lambda x: x <= 1.5))
    return out


def verdicts(rows: list[dict], modes: list[str]) -> list[dict]:
    met = {True: "met", False: "missed"}
    out = []
    for text, needs, value, show, ok in targets():
        if not all(m in modes for m in needs):
            out.append({"target": text, "per_size": [], "verdict": "n/a (mode not run)"})
            continue
        per_size = [(value(r), ok(value(r))) for r in rows]
        out.append({"target": text, "per_size": [{"size_mib": r["size_mib"], "value": v, "text": f"{show(v)} {met[k]}", "met": k}
                                                 for r, (v, k) in zip(rows, per_size)],
                    "verdict": met[all(k for _, k in per_size)]})
    # Memory flat: each of our commands' peak RSS at the largest size within 10% of the smallest's.
    small, large = min(rows, key=lambda r: r["size_mib"]), max(rows, key=lambda r: r["size_mib"])
    for mode in modes:
        for command, (label, _) in COMMANDS.items():
            text = f"memory flat ({mode}): {label}, peak RSS within 10% from {small['size_mib']} to {large['size_mib']} MiB"
            cells = [{"size_mib": r["size_mib"], "value": r[command][mode]["peak_rss"], "text": mib(r[command][mode]["peak_rss"])}
                     for r in rows]
            if small is large:
                out.append({"target": text, "per_size": cells, "verdict": "n/a (needs two sizes)"})
                continue
            change = large[command][mode]["peak_rss"] / small[command][mode]["peak_rss"] - 1
            out.append({"target": text, "per_size": cells, "change": change,
                        "verdict": f"{change:+.1%}: {met[abs(change) <= 0.10]}"})
    return out


def verdict_table(rows: list[dict], found: list[dict]) -> str:
    out = ["| target | " + " | ".join(f"{r['size_mib']} MiB" for r in rows) + " | verdict |",
           "|---|" + "---|" * len(rows) + "---|"]
    for v in found:
        cells = {c["size_mib"]: c["text"] for c in v["per_size"]}
        out.append(f"| {v['target']} | " + " | ".join(cells.get(r["size_mib"], "—") for r in rows) + f" | **{v['verdict']}** |")
    return "\n".join(out)


NOTES = """\
Cells: wall seconds end to end · peak RSS (the largest process of the command's tree; the guide: the larger of its two
commands). restic ÷ ours ≥ 1 means we are faster. Restores: ours checks every file's SHA-256 against the manifest and
fsyncs every file and directory before renaming the tree into place (`--no-check`: no server started on the restored
data); restic checks its blobs' MACs, without fsync; the guide's tar checks gzip's CRC, without fsync. Every restored tree
was then compared here with the checkpoint it came from (SHA-256 of every file, untimed): all identical. restic restores
without a cache (a new host); its list uses the cache its backups left. The guide has no incremental (its restore unpacks
a second full archive of the grown database) and no list."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024", help="database sizes in MiB, comma-separated (default 256,1024)")
    ap.add_argument("--modes", default="direct,prefect", help="our modes to run, comma-separated: direct, prefect (default both)")
    ap.add_argument("--ours-args", default="", help="extra arguments for each of our backup, list and restore commands "
                                                    "(one string, split like a shell would; a lone flag needs the = form: "
                                                    "--ours-args=--read-data)")
    ap.add_argument("--plain", action="store_true", help="our repositories unencrypted (backup --insecure-no-encryption); "
                                                         "default: encrypted, as restic's, under the passphrase bench-only")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/qilbee-bench"), help="holds the cached databases and the results")
    ap.add_argument("--keep", action="store_true", help="keep the run's scratch directory (logs, caches) for a look")
    args = ap.parse_args()
    try:
        sizes = [int(x) for x in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes: not a comma-separated list of MiB: {args.sizes!r}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not sizes or min(sizes) < 1:
        ap.error("--sizes must be at least 1 MiB each")
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        ap.error(f"--modes: a comma-separated choice of {', '.join(MODES)}, got {args.modes!r}")
    missing = [tool for tool in ("aws", "restic", "tar") if not shutil.which(tool)]
    if missing:
        sys.exit(f"needs {', '.join(missing)} on PATH (restic: apt-get install restic; aws: pip install awscli)")
    restic_version = subprocess.run(["restic", "version"], capture_output=True, text=True, check=True).stdout.strip()
    if " 0.14." not in restic_version:
        print(f"warning: the targets compare with restic 0.14; this is {restic_version}", file=sys.stderr)
    # A SIGTERM unwinds like Ctrl-C, so the servers and the scratch directory are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="commands-", dir=workdir))
    rows = []
    try:
        with ExitStack() as servers:
            s3 = servers.enter_context(moto(scratch))
            api = servers.enter_context(prefect_server(scratch)) if "prefect" in modes else None
            bench = Bench(s3, api, modes, shlex.split(args.ours_args), plain=args.plain)
            for size in sizes:
                rows.append(run_size(bench, workdir, size, scratch))
    except BaseException:
        print(f"benchmark failed; its logs are in {scratch}" if args.keep
              else "benchmark failed; rerun with --keep to keep its logs", file=sys.stderr)
        raise
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    found = verdicts(rows, modes)
    result = {"sizes": rows, "verdicts": found, "modes": modes, "ours_args": args.ours_args, "plain": args.plain, "ours_command": QILBEE,
              "restic": restic_version, "cpus": os.cpu_count()}
    out = workdir / ("results-commands-plain.json" if args.plain else "results-commands.json")
    out.write_text(json.dumps(result, indent=2))
    print(table(rows, modes))
    print()
    print(NOTES)
    if "prefect" in modes:
        print("Flow runs each command made in the Prefect server: " + ", ".join(
            f"{label} {'/'.join(str(r[c]['prefect']['flow_runs']) for r in rows)}" for c, (label, _) in COMMANDS.items()) + ".")
    print(f"(machine: {os.cpu_count()} CPUs; 1-min load average "
          + ", ".join(f"{r['load_avg_at_start'][0]:.1f} → {r['load_avg_at_end'][0]:.1f} at {r['size_mib']} MiB" for r in rows)
          + ": figures are indicative)")
    print()
    print(verdict_table(rows, found))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
