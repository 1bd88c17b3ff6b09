"""Issue 10: bad input is refused before anything happens. Every command, a table of bad values, the
real CLI entry point (in-process for speed; a few cases again as a subprocess): exit 2 for usage and
1 for failures, one line on stderr, no traceback, nothing written, and no flow run created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qilbee_cli.main import main

R = "{tmp}/repo"  # a repository that must never come into existence
SRC = "http://127.0.0.1:9"  # nothing listens there

USAGE = [
    # backup and archive
    ["backup", "--repo", "ftp://host/x"],
    ["backup", "--repo", ""],
    ["backup", "--repo", "s3://"],
    ["backup", "--repo", R, "--source", "http://user:secretpw@127.0.0.1:7474"],
    ["backup", "--repo", R, "--source", "http://127.0.0.1:7474/?api_key=secretpw"],
    ["backup", "--repo", R, "--source", "http://127.0.0.1:99999"],
    ["backup", "--repo", R, "--source", "ftp://127.0.0.1:7474"],
    ["backup", "--repo", R, "--source", ""],
    ["backup", "--repo", R, "--mode", "sideways"],
    ["backup", "--repo", R, "--kind", "Daily Backups"],
    ["backup", "--repo", R, "--kind", ""],
    ["backup", "--repo", R, "--keep-within", "7x"],
    ["backup", "--repo", R, "--keep-within", "7 days"],
    ["backup", "--repo", R, "--keep-last", "-1"],
    ["backup", "--repo", R, "--keep-daily", "ten"],
    ["backup", "--repo", R, "--lock-days", "0"],
    ["backup", "--repo", R, "--lock-days", "5"],  # no s3:// repository to lock
    ["backup", "--repo", R, "--lock-mode", "forever"],
    ["backup", "--repo", R, "--sse", "rot13"],
    ["backup", "--repo", R, "--storage-class", "cheap"],
    ["backup", "--repo", R, "--lock-wait", "-1"],
    ["backup", "--repo", R, "--source-name", "Prod DB"],
    ["backup", "--repo", R, "--source-name", ""],
    ["backup", "--repo", R, "--keep-checkpoints", "-1"],
    ["backup", "--repo", R, "--grace", "soon"],
    ["backup", "--repo", R, "--container", ""],
    ["backup", "--repo", R, "--container", "no/slashes"],
    ["backup", "--repo", R, "--data-path", ""],
    ["backup", "--repo", R, "--api-key", ""],
    ["backup", "--repo", R, "--api-key-secret", "not a block!"],
    ["backup", "--repo", R, "--bogus"],
    ["backup"],
    ["archive", "--repo", R, "--storage-class", "cold"],
    ["archive", "--repo", R, "--spool-dir", ""],
    ["archive", "--repo", R, "--keep-monthly", "-3"],
    ["archive", "--repo", R, "--kind", "Monthly!"],
    ["archive", "--repo", R, "--source", "http://127.0.0.1:0"],
    # reading commands
    ["list"],
    ["list", "--repo", R, "--kind", "a b"],
    ["list", "--repo", R, "--source-name", "!"],
    ["verify", "--repo", R, "--backup", ""],
    ["verify", "--repo", R, "--backup", "../../etc/passwd"],
    ["verify", "--repo", R, "--backup", "20261130T020000Z"],
    ["verify", "--repo", "s3://"],
    ["prune", "--repo", R, "--keep-daily", "-1"],
    ["prune", "--repo", R, "--keep-within", "7 fortnights"],
    ["prune", "--repo", R, "--grace", "x"],
    ["prune", "--repo", R, "--kind", "Bad Kind"],
    ["prune", "--repo", R, "--source-name", "A"],
    # restore
    ["restore", "--repo", R, "--data-dir", ""],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--backup", ""],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--backup", "yesterday"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--archive", "bad"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--archive", "latest", "--retrieval-tier", "Fast"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--retrieval-days", "0"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--retrieval-wait", "-1"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--source", "http://u:p@127.0.0.1:7474"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--container", "bad name!"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--server-cmd", ""],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t", "--server-env", "not-a-name"],
    ["restore", "--repo", R],
    # dr and drill
    ["dr", "--repo", R, "--dns", "hosts", "--record", "not a fqdn!!"],
    ["dr", "--repo", R, "--dns", "hosts", "--record", "db.example.com", "--ttl", "-5"],
    ["dr", "--repo", R, "--dns", "hosts", "--record", "db.example.com", "--address", "not-an-ip"],
    ["dr", "--repo", R, "--dns", "hosts", "--record", "db.example.com", "--address", "999.1.1.1"],
    ["dr", "--repo", R, "--dns", "rfc2136", "--record", "db.example.com"],
    ["dr", "--repo", R, "--dns", "rfc2136", "--record", "db.example.com", "--dns-server", "10.0.0.53"],
    ["dr", "--repo", R, "--dns", "rfc2136", "--record", "db.example.com", "--dns-server", "10.0.0.53",
     "--dns-zone", "example.com", "--dns-port", "70000"],
    ["dr", "--repo", R, "--dns", "rfc2136", "--record", "db.example.com", "--dns-server", "10.0.0.53",
     "--dns-zone", "example.com", "--tsig-algorithm", "rot13"],
    ["dr", "--repo", R, "--dns", "hosts", "--record", "db.example.com", "--dns-server", "10.0.0.53"],
    ["dr", "--repo", R, "--dns", "bind"],
    ["dr", "--repo", R, "--record", "db.example.com"],
    ["dr", "--repo", R, "--dns", "hosts"],
    ["dr", "--repo", R, "--dns", "hosts", "--record", "db.example.com", "--hosts-file", ""],
    ["dr", "--repo", R, "--dns", "rfc2136", "--record", "db.example.com", "--dns-server", "10.0.0.53",
     "--dns-zone", "example.com", "--tsig-secret", ""],
    ["dr", "--repo", R, "--port", "70000"],
    ["dr", "--repo", R, "--port", "0"],
    ["dr", "--repo", R, "--provider", "vm"],
    ["dr", "--repo", R, "--network", "overlay"],
    ["dr", "--repo", R, "--health-timeout", "0"],
    ["dr", "--repo", R, "--rto-target", "-1"],
    ["dr", "--repo", R, "--backup", ""],
    ["dr", "--repo", R, "--data-root", ""],
    ["dr", "--repo", R, "--approval-timeout", "0"],
    ["drill", "--repo", R, "--provider", "vm"],
    ["drill", "--repo", R, "--backup", ""],
    ["drill", "--repo", R, "--health-timeout", "-1"],
    ["drill", "--repo", R, "--server-cmd", "  "],
    ["drill", "--repo", R, "--image", ""],
    ["drill", "--repo", R, "--kind", "Weekly!"],
    ["serve", "--bogus"],
    ["nonsense"],
    # encryption: keys and passphrases
    ["key", "remove", "--repo", R],  # no KEY_ID
    ["key", "remove", "not-a-key", "--repo", R],
    ["key", "list", "0123456789abcdef", "--repo", R],  # KEY_ID only with remove
    ["key", "rotate", "--repo", R],
    ["key", "list", "--repo", R, "--new-password-file", "{tmp}/none"],
    ["init", "--repo", "ftp://host/x"],
    ["list", "--repo", R, "--password-file", "{tmp}/no-such-file"],
    ["backup", "--repo", R, "--source", SRC, "--password-file", "{tmp}"],  # a directory, not a file
]

FAILURES = [  # valid input, but the thing is not there: exit 1, one line, nothing written
    ["list", "--repo", R],
    ["verify", "--repo", R],
    ["prune", "--repo", R, "--keep-last", "1"],
    ["restore", "--repo", R, "--data-dir", "{tmp}/t"],
    ["drill", "--repo", R],
    ["dr", "--repo", R, "--data-root", "{tmp}/dr"],
    ["backup", "--repo", R, "--source", SRC],
    ["archive", "--repo", R, "--source", SRC],
    ["key", "list", "--repo", R],
]


@pytest.fixture(autouse=True)
def _loggers_as_they_were():
    """main() tunes some loggers for a terminal; in this shared test process, put them back after."""
    import logging

    names = ("httpx", "EventsWorker", "qilbee_backup", "qilbee_backup.run")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _argv(case: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in case]


def _flow_runs() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.count_flow_runs()


def _check(code: int, expected: int, err: str, out: str, tmp: Path, case) -> list[str]:
    """What is wrong with one outcome (empty: clean)."""
    problems = []
    lines = [line for line in err.splitlines() if line.strip()]
    if code != expected:
        problems.append(f"exit {code}, expected {expected}")
    if "Traceback" in err:
        problems.append("a traceback")
    if expected == 2 and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if not lines or not lines[-1].startswith("qilbee-backup: error:"):
        problems.append(f"last line is not the error: {lines[-1:]}")
    if expected == 2 and out.strip():
        problems.append("output on stdout")
    if "secretpw" in err + out:
        problems.append("the secret was echoed")
    written = [p.name for p in tmp.iterdir()]
    if written:
        problems.append(f"wrote {written}")
    return [f"{' '.join(case)}: {p}" for p in problems]


def _run_table(cases, expected, tmp_path_factory, capsys, monkeypatch) -> tuple[int, list[str]]:
    monkeypatch.delenv("QILBEE_API_KEY", raising=False)
    monkeypatch.delenv("QILBEE_TSIG_SECRET", raising=False)
    problems = []
    for case in cases:
        tmp = tmp_path_factory.mktemp("bad")
        try:
            code = main(_argv(case, tmp))
        except SystemExit as exit_:  # argparse
            code = exit_.code
        captured = capsys.readouterr()
        problems += _check(code, expected, captured.err, captured.out, tmp, case)
    return len(cases), problems


def test_bad_input_is_refused_before_anything_runs(tmp_path_factory, capsys, monkeypatch):
    before = _flow_runs()
    tried, problems = _run_table(USAGE, 2, tmp_path_factory, capsys, monkeypatch)
    assert _flow_runs() == before, "a usage error created a flow run"
    print(f"bad input: {tried} tried, {tried - len({p.split(':')[0] for p in problems})} clean")
    assert problems == []


def test_failures_are_one_line_exit_1_and_write_nothing(tmp_path_factory, cli_env):
    """As a person meets them: real processes (a flow run's log lines come first; the error is last)."""
    problems = []
    for case in FAILURES:
        tmp = tmp_path_factory.mktemp("fail")
        done = subprocess.run([sys.executable, "-m", "qilbee_cli", *_argv(case, tmp)], env=cli_env,
                              capture_output=True, text=True, timeout=300)
        problems += _check(done.returncode, 1, done.stderr, done.stdout, tmp, case)
    print(f"failures: {len(FAILURES)} tried, {len(FAILURES) - len({p.split(':')[0] for p in problems})} clean")
    assert problems == []


@pytest.mark.parametrize("case", [USAGE[3], USAGE[8], ["dr", "--repo", R, "--dns", "rfc2136", "--record", "db.example.com"]])
def test_the_installed_command_answers_the_same(case, cli_env, tmp_path):
    """The same through a real process: the console entry point and its exit code."""
    done = subprocess.run([sys.executable, "-m", "qilbee_cli", *_argv(case, tmp_path)], env=cli_env,
                          capture_output=True, text=True, timeout=120)
    assert _check(done.returncode, 2, done.stderr, done.stdout, tmp_path, case) == []


def test_a_location_that_holds_no_repository_is_not_an_empty_one(tmp_path, cli_env, s3_bucket):
    """A verify pointed at the wrong place fails: a missing path, an empty directory, a file, a wrong S3 prefix."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("not a repository")
    for repo in (str(tmp_path / "missing"), str(tmp_path / "empty"), str(tmp_path / "file"), f"s3://{s3_bucket}/wrong"):
        for command in ("list", "verify", "prune"):
            done = subprocess.run([sys.executable, "-m", "qilbee_cli", command, "--repo", repo, "--no-prefect"],
                                  env=cli_env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 1 and "is not a qilbee-backup repository" in done.stderr.splitlines()[-1], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"] and not any((tmp_path / "empty").iterdir())


def test_no_docker_engine_is_one_line(tmp_path, cli_env, emulator):
    repo = str(tmp_path / "repo")
    made = subprocess.run([sys.executable, "-m", "qilbee_cli", "backup", "--no-prefect", "--repo", repo, "--source", emulator.url],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    env = dict(cli_env, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    for command in (["restore", "--repo", repo, "--data-dir", str(tmp_path / "target"), "--container", "qilbeedb"],
                    ["backup", "--repo", repo, "--source", emulator.url, "--mode", "offline", "--container", "qilbeedb"]):
        done = subprocess.run([sys.executable, "-m", "qilbee_cli", command[0], "--no-prefect", *command[1:]],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert "needs the Docker engine: no socket at" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "target").exists()


def test_bad_input_naming_a_real_s3_repository_is_still_one_line(tmp_path, moto_server, cli_env, s3_repo_url, s3_client,
                                                                  emulator):
    """A direct run starts opening its repository while it checks its input (ahead.open_ahead): that
    work (boto3's client, the key, the KDF) must not add a line after the error, nor write anything."""
    made = subprocess.run([sys.executable, "-m", "qilbee_cli", "backup", "--no-prefect", "--repo", s3_repo_url,
                           "--source", emulator.url], env=cli_env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    bucket, prefix = s3_repo_url[len("s3://"):].split("/", 1)

    def stored() -> dict[str, str]:
        return {o["Key"]: o["ETag"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}

    before = stored()
    problems = []
    for case in (["list", "--repo", s3_repo_url, "--kind", "a b"],
                 ["restore", "--repo", s3_repo_url, "--data-dir", "{tmp}/out", "--backup", "yesterday"],
                 ["backup", "--repo", s3_repo_url, "--source", emulator.url, "--keep-last", "-1"],
                 ["verify", "--repo", s3_repo_url, "--source-name", "Prod DB"]):
        scratch = tmp_path / f"case-{len(problems)}-{case[0]}"
        scratch.mkdir()
        done = subprocess.run([sys.executable, "-m", "qilbee_cli", *_argv(case, scratch), "--no-prefect"], env=cli_env,
                              capture_output=True, text=True, timeout=120)
        problems += _check(done.returncode, 2, done.stderr, done.stdout, scratch, case)
    assert problems == []
    assert stored() == before
