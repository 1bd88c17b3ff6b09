"""Issue 13 part 3: the metrics and the alert rules, with Debian's real Prometheus.

- deployments/prometheus/qilbee-backup.rules.yml passes `promtool check rules`, and its unit tests
  (qilbee-backup.rules.test.yml: input series, expected alerts) pass `promtool test rules`;
- a real `qilbee-backup serve --metrics-address` (its repositories taken from the deployments it
  serves) is scraped by a real `prometheus` loading those rules: the figures arrive as the status
  computed them, and the failed drill's alert fires for that source only.

Prometheus binds 127.0.0.1 on a free port with its own config and data directory, and is stopped by
its PID. Skipped, saying why, only when the binaries are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qilbee_backup.backup import backup_directory
from qilbee_backup.emulator.store import open_readonly_counts
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.repository import open_repository
from tests.flows.conftest import REPO_ROOT
from tests.plugins.emulator import free_port
from tests.plugins.prefect_server import stop_process

PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
RULES = REPO_ROOT / "deployments" / "prometheus"
pytestmark = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL),
                                reason="needs the prometheus and promtool binaries (Debian: apt-get install -y prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_and_the_example_config_are_valid():
    checked = promtool("check", "rules", "qilbee-backup.rules.yml")
    assert checked.returncode == 0 and "SUCCESS: 9 rules found" in checked.stdout, checked.stdout + checked.stderr
    config = promtool("check", "config", "prometheus.example.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_alert_rules_fire_when_they_should_and_only_then():
    tested = promtool("test", "rules", "qilbee-backup.rules.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def _ok(done) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _wait(what: str, check, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}: "
                                 f"{log.read_text()[-3000:] if log else ''}")
        try:
            value = check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s: {log.read_text()[-3000:] if log else ''}")


def _query(api: str, promql: str) -> dict[str, float]:
    """source (or the whole label set) -> value of an instant query."""
    answer = httpx.get(f"{api}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return {r["metric"].get("source", json.dumps(r["metric"], sort_keys=True)): float(r["value"][1])
            for r in answer["data"]["result"]}


def test_prometheus_scrapes_serve_and_the_failed_drill_alert_fires(run_cli, cli_env, emulator, tmp_path):
    # A repository where prod was backed up and drilled, and "broken" failed its drill.
    repo = str(tmp_path / "repo")
    _ok(run_cli("backup", "--no-prefect", "--source", emulator.url, "--repo", repo, "--source-name", "prod", "--kind", "daily",
                "--json"))
    drill = _ok(run_cli("drill", "--no-prefect", "--repo", repo, "--source-name", "prod", "--json"))
    snap = Path(httpx.post(f"{emulator.url}/admin/snapshot").json()["path"])
    real = open_readonly_counts(snap)
    backup_directory([open_repository(repo)], snap, kind="weekly", spool=tmp_path / "spool",
                     source=SourceInfo(url=emulator.url, mode="online", name="broken"),
                     stats=dict(real, nodeCount=real["nodeCount"] + 3))
    assert run_cli("drill", "--no-prefect", "--repo", repo, "--source-name", "broken").returncode == 1

    # serve: one scheduled status deployment; the metrics report on the repository it names.
    config = tmp_path / "prefect.yaml"
    config.write_text(f"""
deployments:
  - name: status-{tmp_path.name[-8:]}
    entrypoint: flows/deployed.py:status
    schedules:
      - interval: 86400
        timezone: UTC
    parameters:
      repos: [{repo}]
""")
    metrics_port, prometheus_port = free_port(), free_port()
    serve_log, prometheus_log = tmp_path / "serve.log", tmp_path / "prometheus.log"
    with open(serve_log, "w") as log:
        serve = subprocess.Popen([sys.executable, "-m", "qilbee_cli", "serve", "--config", str(config),
                                  "--metrics-address", f"127.0.0.1:{metrics_port}", "--metrics-cache", "1"],
                                 env=cli_env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    prometheus = None
    try:
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        _wait("serve's metrics", lambda: httpx.get(metrics, timeout=5).status_code == 200, 120, serve, serve_log)

        (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES / "qilbee-backup.rules.yml"}
scrape_configs:
  - job_name: qilbee-backup
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""")
        with open(prometheus_log, "w") as log:
            prometheus = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                           f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                                           f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        api = f"http://127.0.0.1:{prometheus_port}"
        _wait("prometheus ready", lambda: httpx.get(f"{api}/-/ready", timeout=2).status_code == 200, 60,
              prometheus, prometheus_log)

        firing = _wait("the failed drill's alert", lambda: _query(
            api, 'ALERTS{alertname="QilbeeBackupRestoreDrillFailed",alertstate="firing"}'), 60, prometheus, prometheus_log)
        assert firing == {"broken": 1.0}
        assert _query(api, 'up{job="qilbee-backup"}') == {json.dumps({"__name__": "up", "instance": f"127.0.0.1:{metrics_port}",
                                                                       "job": "qilbee-backup"}, sort_keys=True): 1.0}
        assert _query(api, "qilbee_backup_ready") == {"prod": 1.0, "broken": 0.0}
        assert _query(api, "qilbee_backup_restore_drill_success") == {"prod": 1.0, "broken": 0.0}
        assert _query(api, "qilbee_backup_restore_drill_rto_seconds") == {"prod": drill["rto_s"]}
        assert _query(api, "qilbee_backup_repository_up") == {json.dumps(
            {"__name__": "qilbee_backup_repository_up", "instance": f"127.0.0.1:{metrics_port}", "job": "qilbee-backup",
             "repository": repo}, sort_keys=True): 1.0}
        status = _ok(run_cli("status", "--repo", repo, "--json", "--source-name", "prod"))
        point = status["repositories"][0]["sources"][0]["recovery_point"]
        created = _query(api, 'qilbee_backup_last_success_timestamp_seconds{source="prod",kind="daily"}')["prod"]
        assert abs(created - _timestamp(point["created_at"])) < 1e-3
        # No RPO alert: both sources were backed up seconds ago (pending or firing would show in ALERTS).
        assert _query(api, 'ALERTS{alertname="QilbeeBackupRecoveryPointTooOld"}') == {}

        rules = httpx.get(f"{api}/api/v1/rules", timeout=5).json()["data"]["groups"]
        loaded = [r for group in rules for r in group["rules"]]
        assert len(loaded) == 9 and all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    finally:
        if prometheus is not None:
            stop_process(prometheus)
        stop_process(serve)


def _timestamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
