#!/usr/bin/env python3
"""Backup benchmark (issue 3): qilbee-backup vs the guide's `tar -czf` + `aws s3 cp`, and restic 0.14,
all to the same moto_server on loopback, on the same RocksDB snapshot, in one run.

    .venv/bin/python benchmarks/bench_backup.py [--sizes 256,1024] [--workdir /tmp/qilbee-bench]

For each database size: a deterministic database (benchmarks/make_database.py, cached in the
workdir) is served by the emulator; each tool backs up the same checkpoint; then the database
grows by 5% and each tool backs up the new checkpoint. Our runs are the real CLI (a Prefect
flow run against a Prefect server started here), timed end to end, with their own peak RSS.
Prints a markdown table and writes results.json in the workdir.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KEEP_SNAPSHOTS, PY, REPO_ROOT, copy_tree, emulator, mib, moto, prefect_server, run_measured, tree_bytes  # noqa: E402


def new_content_bytes(old: Path, new: Path) -> int:
    """Bytes of the files in new whose content is not in old."""
    have = {hashlib.sha256(p.read_bytes()).digest() for p in old.iterdir() if p.is_file()}
    return sum(p.stat().st_size for p in new.iterdir() if p.is_file() and hashlib.sha256(p.read_bytes()).digest() not in have)


def ours(env: dict, source: str, repo: str, data_dir: Path) -> tuple[dict, Path]:
    """Our CLI end to end (it takes the snapshot itself); the others then back up that same snapshot."""
    seconds, peak, out = run_measured([PY, "-m", "qilbee_cli", "backup", "--source", source, "--repo", repo, *KEEP_SNAPSHOTS,
                                       "--json"], env)
    result = json.loads(out)
    return ({"seconds": seconds, "peak_rss": peak, "uploaded": result["bytes_uploaded"], "flow_s": result["duration_s"]},
            data_dir / "snapshots" / result["snapshot_id"])


def guide(env: dict, snap: Path, bucket: str, work: Path, tag: str) -> dict:
    archive = work / f"guide-{tag}.tar.gz"
    t0 = time.perf_counter()
    subprocess.run(["tar", "-czf", str(archive), "-C", str(snap), "."], check=True)
    subprocess.run(["aws", "s3", "cp", "--quiet", str(archive), f"s3://{bucket}/guide/{archive.name}"], check=True, env=env)
    seconds = time.perf_counter() - t0
    size = archive.stat().st_size
    archive.unlink()
    return {"seconds": seconds, "uploaded": size}


def restic(env: dict, snap: Path) -> dict:
    # restic finds its parent snapshot by path: show it each snapshot at the same path (hard links, no copy).
    stage = snap.parent.parent.parent / "restic-view"
    shutil.rmtree(stage, ignore_errors=True)
    subprocess.run(["cp", "-al", str(snap), str(stage)], check=True)
    seconds, peak, out = run_measured(["restic", "backup", "--json", str(stage)], env)
    summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line]
    uploaded = summary[-1].get("data_added", 0) if summary else 0
    return {"seconds": seconds, "peak_rss": peak, "uploaded": uploaded}


def run_size(size_mib: int, work: Path, s3: str, api: str) -> dict:
    base = work / f"db-{size_mib}-v2"
    if not base.exists():
        subprocess.run([PY, str(REPO_ROOT / "benchmarks" / "make_database.py"), str(base), "--size-mib", str(size_mib)], check=True)
    live = work / f"live-{size_mib}"
    copy_tree(base, live)
    bucket = f"bench-{size_mib}-{int(time.time())}"
    env = dict(os.environ, PREFECT_API_URL=api, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=s3, AWS_ENDPOINT_URL_S3=s3,
               XDG_CACHE_HOME=str(work / f"cache-{size_mib}"), RESTIC_PASSWORD="bench-only",
               RESTIC_REPOSITORY=f"s3:{s3}/{bucket}/restic", PYTHONPATH=str(REPO_ROOT))
    shutil.rmtree(work / f"cache-{size_mib}", ignore_errors=True)
    subprocess.run(["aws", "s3", "mb", f"s3://{bucket}"], check=True, env=env, capture_output=True)
    subprocess.run(["restic", "init"], check=True, env=env, capture_output=True)
    repo = f"s3://{bucket}/qilbee"
    row: dict = {"size_mib": size_mib}
    with emulator(live, work) as url:
        mine, snap1 = ours(env, url, repo, live)
        row["snapshot_bytes"] = tree_bytes(snap1)
        row["full"] = {"ours": mine, "guide": guide(env, snap1, bucket, work, "full"), "restic": restic(env, snap1)}
    # Grow by 5% (the emulator holds the database's lock, so grow it between two runs of the server).
    subprocess.run([PY, str(REPO_ROOT / "benchmarks" / "make_database.py"), str(live), "--grow-percent", "5"], check=True)
    with emulator(live, work) as url:
        mine, snap2 = ours(env, url, repo, live)
        row["grown_bytes"] = tree_bytes(snap2) - row["snapshot_bytes"]
        row["new_content_bytes"] = new_content_bytes(snap1, snap2)
        row["incremental"] = {"ours": mine, "restic": restic(env, snap2)}
    shutil.rmtree(live, ignore_errors=True)
    return row


def table(rows: list[dict]) -> str:
    out = ["| database | step | qilbee-backup | tar -czf + aws s3 cp | restic 0.14 | ours vs guide | ours vs restic |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        f, i = r["full"], r["incremental"]
        out.append(f"| {mib(r['snapshot_bytes'])} | full backup | {f['ours']['seconds']:.1f} s, sent {mib(f['ours']['uploaded'])}, peak RSS {mib(f['ours']['peak_rss'])} "
                   f"(flow {f['ours']['flow_s']:.1f} s) | {f['guide']['seconds']:.1f} s, sent {mib(f['guide']['uploaded'])} | {f['restic']['seconds']:.1f} s, peak RSS {mib(f['restic']['peak_rss'])} "
                   f"| {f['guide']['seconds'] / f['ours']['seconds']:.2f}× faster | {f['restic']['seconds'] / f['ours']['seconds']:.2f}× |")
        out.append(f"| +{mib(r['grown_bytes'])} grown, {mib(r['new_content_bytes'])} new files | incremental | {i['ours']['seconds']:.1f} s "
                   f"({100 * i['ours']['seconds'] / f['ours']['seconds']:.0f}% of full), sent {mib(i['ours']['uploaded'])} "
                   f"({i['ours']['uploaded'] / max(1, r['new_content_bytes']):.2f}× the new bytes), peak RSS {mib(i['ours']['peak_rss'])} "
                   f"| — | {i['restic']['seconds']:.1f} s, sent {mib(i['restic']['uploaded'])} | — | {i['restic']['seconds'] / i['ours']['seconds']:.2f}× |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024", help="database sizes in MiB, comma-separated")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/qilbee-bench"))
    args = ap.parse_args()
    if not shutil.which("restic") or not shutil.which("aws"):
        sys.exit("needs restic (apt-get install restic) and the aws CLI (pip install awscli) on PATH")
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    with moto(args.workdir) as s3, prefect_server(args.workdir) as api:
        # Warm the Prefect server (its first flow run creates the flow and its tables' pages).
        for size in [int(s) for s in args.sizes.split(",")]:
            rows.append(run_size(size, args.workdir, s3, api))
            print(f"done {size} MiB", file=sys.stderr)
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
