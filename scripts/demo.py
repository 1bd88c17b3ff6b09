#!/usr/bin/env python3
"""`make demo`: the whole story on the embedded defaults, in about a minute.

A QilbeeDB emulator with seeded graphs → an online backup into a local (encrypted) repository → a second,
incremental backup → verify (re-reading every blob) → a restore drill on a throwaway instance →
a disaster recovery onto a new instance with a DNS switch in a hosts file → the RTO/RPO report.
Everything lives in ./demo-work and binds 127.0.0.1; every server started here is stopped here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "demo-work"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="qilbee-demo-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the demo prints its own story
# New repositories are encrypted; an operator keeps the passphrase in QILBEE_PASSWORD(_FILE) or a Secret block.
os.environ.setdefault("QILBEE_PASSWORD", "demo passphrase, not for real use")


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(data: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "qilbee_backup.emulator", "--data-dir", str(data), "--port", str(port),
                             "--seed-nodes", "5000"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(WORK / "emulator.log", "w"))
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the emulator did not start; see {WORK / 'emulator.log'}")


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    repo = str(WORK / "repository")
    hosts = WORK / "hosts"
    hosts.write_text("127.0.0.1 localhost\n192.0.2.10 db.qilbee.internal   # the lost primary\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"QilbeeDB emulator on {url}, 5000 seeded nodes in {WORK / 'data'}")
    emulator = start_emulator(WORK / "data", port)
    pids = [emulator.pid]
    try:
        import httpx

        from flows.backup import backup
        from flows.disaster_recovery import disaster_recovery
        from flows.drill import drill
        from flows.maintenance import list_backups, verify
        from qilbee_backup.report import recovery_markdown

        say("backup, run directly: snapshot → copy → upload → verify   (qilbee-backup backup --source URL --repo DIR --kind daily)")
        first = backup(source=url, repos=[repo], kind="daily")
        print(json.dumps({k: first[k] for k in ("backup_id", "mode", "files", "bytes_total", "bytes_uploaded", "duration_s")}))
        keys = sorted(p.stem for p in (WORK / "repository" / "keys").iterdir())
        print(f"  the repository is encrypted (AES-256-GCM, keyed blob names) under QILBEE_PASSWORD: key {keys[0]}; "
              "its blobs and manifests hold nothing readable")

        for i in range(500):
            httpx.post(f"{url}/graphs/social/nodes", json={"labels": ["Person"], "properties": {"name": f"new-{i}"}})
        say("500 more nodes, then an incremental backup, this time as a Prefect flow run: the same runbook, its "
            "steps as tasks, recorded (here in a temporary Prefect server; with PREFECT_API_URL set, in yours and its UI)")
        from flows import deployed

        second = deployed.backup(source=url, repos=[repo], kind="daily")
        print(json.dumps({k: second[k] for k in ("backup_id", "files", "bytes_total", "bytes_uploaded", "duration_s")}))
        print("  only the new RocksDB files were sent. The other steps of this demo run directly (no Prefect: what the "
              "CLI does when no API is configured, e.g. on a laptop or when the Prefect server is the thing that is down)")

        say("list   (qilbee-backup list --repo DIR)")
        for row in list_backups(repo=repo):
            print(f"  {row['backup_id']}  {row['kind']:6}  {row['bytes_total']:>10} bytes  {row['files']} files")

        say("verify --read-data: every blob downloaded, decompressed and re-hashed")
        checked = verify(repo=repo, read_data=True)
        print(f"  ok={checked['ok']}  backups checked: {len(checked['backups'])}")

        say("restore drill: a throwaway instance, checked, torn down   (qilbee-backup drill --repo DIR)")
        drilled = drill(repo=repo)
        print(f"  drill of {drilled['backup_id']}: ok={drilled['ok']}, RTO {drilled['rto_s']:.1f} s")

        say("the primary is lost: disaster recovery with a DNS switch in a hosts file")
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(30)
        result = disaster_recovery(repo=repo, data_root=str(WORK / "dr"),
                                   dns={"provider": "hosts", "record": "db.qilbee.internal", "hosts_file": str(hosts)})
        pids.append(result["instance"]["pid"])
        print(recovery_markdown("Disaster recovery", result))
        print(f"\nhosts file now:\n{hosts.read_text()}")
        stats = httpx.get(f"{result['instance']['url']}/admin/stats").json()["storage"]
        print(f"the new instance at {result['instance']['url']} serves {stats['nodeCount']} nodes, "
              f"{stats['relationshipCount']} relationships (the backup recorded {second['stats']['nodeCount']} nodes)")
        say(f"done; everything is in {WORK}")
        return 0
    finally:
        for pid in pids:
            stop(pid)


if __name__ == "__main__":
    sys.exit(main())
