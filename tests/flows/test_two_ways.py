"""Issue 11: two ways to run, one engine. The same commands as Prefect flow runs (an API configured)
and directly (none: no Prefect import, no temporary server, nothing recorded) give the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.flows.conftest import REPO_ROOT


def _flow_runs() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.count_flow_runs()


def _same(result: dict) -> dict:
    """A result without what differs between two runs of the same thing (ids, times, durations)."""
    drop = {"backup_id", "duration_s", "snapshot_id", "checkpoints", "rto_s", "rpo_s", "steps", "instance", "created_at",
            "drill_id", "trend"}  # each run its own record and the history up to it
    return {k: v for k, v in result.items() if k not in drop}


def test_the_same_commands_both_ways(run_cli, emulator, tmp_path):
    results = {}
    for way in ("--prefect", "--no-prefect"):
        repo = str(tmp_path / way.strip("-"))
        before = _flow_runs()
        made = run_cli("backup", way, "--source", emulator.url, "--repo", repo, "--kind", "daily", "--json")
        assert made.returncode == 0, made.stderr[-2000:]
        checked = run_cli("verify", way, "--repo", repo, "--read-data", "--json")
        restored = run_cli("restore", way, "--repo", repo, "--data-dir", str(tmp_path / f"r{way}"), "--json")
        drilled = run_cli("drill", way, "--repo", repo, "--json")
        assert all(d.returncode == 0 for d in (checked, restored, drilled)), [d.stderr[-800:] for d in (checked, restored, drilled)]
        created = _flow_runs() - before
        recorded = "running without Prefect" not in made.stderr
        backup_id = json.loads(made.stdout)["backup_id"]
        outputs = [json.loads(d.stdout.replace(repo, "REPO").replace(str(tmp_path / f"r{way}"), "TARGET")
                              .replace(backup_id, "BACKUP")) for d in (made, checked, restored, drilled)]
        results[way] = (created, recorded, [_same(o) for o in outputs])
    assert results["--prefect"][:2] == (4, True) and results["--no-prefect"][:2] == (0, False)
    assert results["--prefect"][2] == results["--no-prefect"][2]


def test_list_never_creates_a_flow_run(run_cli, emulator, tmp_path):
    repo = str(tmp_path / "repo")
    assert run_cli("backup", "--source", emulator.url, "--repo", repo).returncode == 0
    before = _flow_runs()
    for way in ("--prefect", "--no-prefect"):
        assert run_cli("list", way, "--repo", repo, "--json").returncode == 0
    assert _flow_runs() == before


def test_the_direct_path_does_not_import_prefect(tmp_path, cli_env):
    env = {k: v for k, v in cli_env.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "home")}
    code = ("import sys; from qilbee_cli.main import main; "
            f"main(['list', '--repo', {str(tmp_path / 'nothing')!r}]); "
            "print('PREFECT' if any(m.split('.')[0] == 'prefect' for m in sys.modules) else 'NO PREFECT')")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "NO PREFECT", done.stdout + done.stderr
    assert "qilbee-backup: error:" in done.stderr and "temporary server" not in done.stderr
    assert os.path.exists(tmp_path / "home") is False  # nothing of Prefect's was even set up
