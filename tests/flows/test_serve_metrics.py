"""`serve`'s metrics flags through the real CLI: bad input is one line and exit 2 before anything
starts, an address that cannot be bound is one line and exit 1, and the repositories default to
those the served deployments name (the scrape itself: test_prometheus.py)."""

from __future__ import annotations

import socket

import pytest

from flows.serve import deployment_repos, load_deployments
from tests.flows.conftest import REPO_ROOT


def one_line(done, code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and lines and lines[-1].startswith("qilbee-backup: error: "), done.stderr
    if code == 2:
        assert len(lines) == 1, done.stderr
    return lines[-1]


@pytest.mark.parametrize("args, message", [
    (("--metrics-address", "127.0.0.1:99999"), "--metrics-address: port 99999 is not from 1 to 65535"),
    (("--metrics-address", "9108"), "--metrics-address: '9108' is not HOST:PORT to listen on"),
    (("--metrics-repo", "/tmp/x"), "--metrics-repo needs --metrics-address"),
    (("--rpo-target", "60"), "--rpo-target needs --metrics-address"),
    (("--metrics-address", "127.0.0.1:9108", "--metrics-cache", "0"), "--metrics-cache: Input should be greater than 0"),
    (("--metrics-address", "127.0.0.1:9108", "--metrics-repo", "s3:/x"), "--metrics-repo: bad repository URL"),
    (("--metrics-address", "127.0.0.1:9108", "--only", "disaster-recovery", "--rto-target", "-1"),
     "--rto-target: Input should be greater than 0"),
])
def test_bad_metrics_flags_are_one_line_and_exit_2(run_cli, args, message):
    assert message in one_line(run_cli("serve", *args), 2)


def test_deployments_without_a_repository_need_metrics_repo(run_cli, tmp_path):
    config = tmp_path / "prefect.yaml"
    config.write_text("deployments:\n  - name: nothing\n    entrypoint: flows/deployed.py:status\n    parameters: {}\n")
    line = one_line(run_cli("serve", "--config", str(config), "--metrics-address", "127.0.0.1:9108"), 2)
    assert "no repository to report on" in line and "--metrics-repo URL" in line


def test_an_address_in_use_is_one_line_and_exit_1(run_cli, tmp_path):
    repo = tmp_path / "repo"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(run_cli("serve", "--only", "weekly-verify", "--metrics-address", f"127.0.0.1:{port}",
                                "--metrics-repo", str(repo)), 1)
    assert line == f"qilbee-backup: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"


def test_the_metrics_report_on_the_repositories_the_deployments_name():
    deployments = load_deployments(REPO_ROOT / "prefect.yaml")
    assert deployment_repos(deployments) == ["/var/backups/qilbee"]  # every deployment of the project's file uses it
    assert deployment_repos([{"parameters": {"repos": ["/a", "s3://b/c"]}}, {"parameters": {"repo": "/a"}}, {}]) == [
        "/a", "s3://b/c"]
