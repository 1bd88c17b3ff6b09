"""Notifications as Prefect automations, end to end: a real `prefect server start` (triggers and actions
services on, proactive triggers evaluated every second), the real apply command, real backup, verify, drill
and disaster-recovery flow runs, and a webhook receiver on 127.0.0.1 that records every POST."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployments.automations import AUTOMATIONS_FILE, automation_names, main, webhook_block
from tests.flows.conftest import REPO_ROOT
from tests.plugins.emulator import EmulatorProcess, free_port
from tests.plugins.prefect_server import prefect_server

# The RPO test re-applies with RPO_S just before its backup, so the backup completes early in a fresh window
# (the watch also runs in fixed windows from `apply`, and one ending just as a backup completes would fire).
FIRST_RPO_S = 30
RPO_S = 20
NAMES = ["qilbee-backup-failed", "qilbee-backup-missing", "qilbee-recovery-rto-missed", "qilbee-recovery-rpo-missed",
         "qilbee-verify-failed", "qilbee-restore-drill-failed", "qilbee-disaster-recovery-failed"]


class Receiver:
    """A webhook target: every POST is kept with its arrival time, path and JSON body."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                received.append({"at": time.time(), "path": self.path, "json": json.loads(body or b"null")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, predicate, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for p in list(self.posts) if predicate(p)]
            if found:
                return found[0]
            time.sleep(0.25)
        return None


def prefect_server_with_services(workdir: Path):
    """A real Prefect server; proactive triggers every second instead of five so the RPO test stays short.

    No dashboard (3 s quicker to start); PREFECT_UI_URL is what the notifications' links are built from.
    """
    port = free_port()
    return prefect_server(workdir, port=port, PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY="PT1S",
                          PREFECT_SERVER_UI_ENABLED="false", PREFECT_UI_URL=f"http://127.0.0.1:{port}")


@pytest.fixture(autouse=True)
def _prefect():
    """Overrides tests/flows/conftest.py: these tests run against their own server, not the session harness."""
    yield


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prefect server + webhook receiver + the environment for subprocesses that talk to that server."""
    workdir = tmp_path_factory.mktemp("automations")
    receiver = Receiver()
    receiver.thread.start()
    with prefect_server_with_services(workdir) as api:
        env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(workdir / "client-home"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("QILBEE_WEBHOOK_URL", None)
        env.pop("QILBEE_API_KEY", None)
        try:
            yield {"api": api, "receiver": receiver, "env": env, "workdir": workdir}
        finally:
            receiver.server.shutdown()
            receiver.server.server_close()


def _run(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def applied(stack):
    """The real command, applied twice; the webhook URL carries a (fake) token in its path and query."""
    token = f"T0KEN-{uuid.uuid4().hex}"
    url = f"{stack['receiver'].url}/hook/{token}?token={token}"
    runs = [_run(stack["env"], "-m", "deployments.automations", "apply", "--webhook-url", url, "--rpo", f"{FIRST_RPO_S}s")
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    return {"token": token, "runs": runs}


def _client(api: str):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api)


def _flow_runs(api: str, flow_name: str, state: str) -> list:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    with _client(api) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state]))))


def _subject(post: dict) -> str:
    return (post["json"] or {}).get("subject", "")


def test_dry_run_shows_the_automations_and_contacts_nothing(tmp_path):
    env = dict(os.environ, PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api", PREFECT_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(REPO_ROOT))
    url = "https://hooks.example.com/services/T0KEN-dry-run"
    run = _run(env, "-m", "deployments.automations", "apply", "--dry-run", "--webhook-url", url, "--rpo", "36h")
    assert run.returncode == 0, run.stderr
    assert "T0KEN" not in run.stdout + run.stderr
    assert [line.split(": ", 1)[1] for line in run.stdout.splitlines() if line.startswith("- name: ")] == NAMES
    assert "within: 129600.0" in run.stdout and "RPO of 36h" in run.stdout
    assert "<id of webhook block qilbee-backup-webhook>" in run.stdout


def test_bad_input_is_a_one_line_usage_error(capsys):
    assert main(["apply", "--dry-run", "--rpo", "5s"]) == 2
    assert capsys.readouterr().err == "automations: error: --rpo '5s' is shorter than Prefect's minimum of 10s for a proactive trigger\n"
    assert main(["apply", "--dry-run", "--rpo", "1m"]) == 2  # m would be ambiguous (minutes or months)
    assert capsys.readouterr().err.startswith("automations: error: bad --rpo '1m': use numbers with units")
    assert main(["apply", "--webhook-url", "ftp://hooks.example.com/T0KEN", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == "automations: error: the webhook URL must be an absolute http:// or https:// URL\n"


def test_the_block_sends_a_custom_payload_and_keeps_the_url_out_of_its_repr():
    receiver = Receiver()
    receiver.thread.start()
    try:
        block = webhook_block(f"{receiver.url}/hook/T0KEN", {"content": "{{subject}}: {{body}}"})
        assert "T0KEN" not in repr(block) and "T0KEN" not in str(block.model_dump())
        block.notify("the body", "the subject")
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    assert [(p["path"], p["json"]) for p in receiver.posts] == [("/hook/T0KEN", {"content": "the subject: the body"})]


def test_without_an_api_url_nothing_is_applied_to_a_throwaway_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO_ROOT))
    run = _run(env, "-m", "deployments.automations", "apply", "--webhook-url", "https://hooks.example.com/T0KEN")
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["automations: error: PREFECT_API_URL is not set: point it at the Prefect server, e.g. http://host:4200/api"]
    assert automation_names(AUTOMATIONS_FILE) == NAMES


def test_apply_twice_leaves_one_of_each_and_never_shows_the_url(stack, applied):
    first, second = applied["runs"]
    for run in applied["runs"]:
        assert applied["token"] not in run.stdout + run.stderr
    assert first.stdout.count(" created (") == len(NAMES)
    # Nothing changed, so nothing is touched: an update would drop the armed RPO window.
    assert second.stdout.count(" unchanged (") == len(NAMES)

    with _client(stack["api"]) as client:
        for name in NAMES:
            assert len(client.read_automations_by_name(name)) == 1, name
        block = client.read_block_document_by_name("qilbee-backup-webhook", "custom-webhook", include_secrets=False)
    assert block.data["url"] == "{{webhook_url}}"
    assert applied["token"] not in json.dumps(block.data, default=str)

    listed = _run(stack["env"], "-m", "deployments.automations", "list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split(":")[0] for line in listed.stdout.splitlines()[:len(NAMES)]] == NAMES
    assert all(": enabled (" in line for line in listed.stdout.splitlines()[:len(NAMES)])


@pytest.fixture(scope="module")
def backup_then_drill(stack, applied, tmp_path_factory):
    """A completed backup, then a drill with RTO and RPO targets nobody meets: two qilbee.recovery events."""
    workdir = tmp_path_factory.mktemp("drill")
    port = free_port()
    emulator = EmulatorProcess(workdir / "data", port, ["--data-dir", str(workdir / "data"), "--host", "127.0.0.1",
                                                        "--port", str(port), "--seed-nodes", "50"], workdir / "emulator.log")
    emulator.start()
    try:
        reapplied = _run(stack["env"], "-m", "deployments.automations", "apply", "--rpo", f"{RPO_S}s")
        assert reapplied.returncode == 0, reapplied.stderr
        assert "automation 'qilbee-backup-missing' updated" in reapplied.stdout
        assert reapplied.stdout.count(" unchanged (") == len(NAMES) - 1 and applied["token"] not in reapplied.stdout + reapplied.stderr
        repo = str(workdir / "repo")
        run = _run(stack["env"], "-c", "from flows.deployed import backup, drill; "
                   f"made = backup(source={emulator.url!r}, repos=[{repo!r}], kind='daily'); "
                   f"drill(repo={repo!r}, targets={{'rto_s': 0.001, 'rpo_s': 0.001}}); "
                   "print('BACKUP-ID', made['backup_id'])", timeout=180)
    finally:
        emulator.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    [backup_id] = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("BACKUP-ID ")]
    [completed] = _flow_runs(stack["api"], "backup", "COMPLETED")
    [drill_run] = _flow_runs(stack["api"], "restore-drill", "COMPLETED")
    return {"backup": completed, "backup_id": backup_id, "drill": drill_run}


def test_missed_rto_and_rpo_post_to_the_webhook(stack, backup_then_drill):
    drill_run, backup_id = backup_then_drill["drill"], backup_then_drill["backup_id"]
    receiver = stack["receiver"]
    rto = receiver.wait_for(lambda p: f"restore-drill {drill_run.name} missed its RTO" in _subject(p), timeout=30)
    rpo = receiver.wait_for(lambda p: f"restore-drill {drill_run.name} missed its RPO" in _subject(p), timeout=10)
    assert rto is not None and rpo is not None, [_subject(p) for p in receiver.posts]
    rto_body, rpo_body = rto["json"]["body"], rpo["json"]["body"]
    assert _subject(rto).endswith("> 0.0 s)")
    assert f"restore-drill flow run {drill_run.name} reached a verified instance after" in rto_body
    assert "the RTO target is 0.0 s" in rto_body and f"Backup restored: {backup_id} (daily)" in rto_body
    assert f"restored backup {backup_id} (daily)" in rpo_body and "the RPO target is 0.0 s" in rpo_body


# Runs while the RPO window of the test below elapses.
def test_a_failed_backup_posts_to_the_webhook(stack, applied):
    # A misconfigured repository fails at once (an unreachable source would spend 7 s on retries first).
    run = _run(stack["env"], "-c", "from flows.deployed import backup; backup(repos=['nosuch://bucket/qilbee'])")
    assert run.returncode != 0
    [failed] = _flow_runs(stack["api"], "backup", "FAILED")

    post = stack["receiver"].wait_for(lambda p: failed.name in _subject(p), timeout=30)
    assert post is not None, f"no webhook POST for {failed.name}; got {[_subject(p) for p in stack['receiver'].posts]}"
    assert post["path"] == f"/hook/{applied['token']}?token={applied['token']}"  # the secret URL was used
    assert _subject(post) == f"qilbee-backup: backup {failed.name} Failed"
    reason = post["json"]["body"].split("\nReason: ", 1)[1].split("\nKind: ", 1)[0]  # the state message, as it is
    assert "bad repository URL 'nosuch://bucket/qilbee'" in reason, post["json"]["body"]
    assert "repositories: nosuch://bucket/qilbee" in post["json"]["body"]
    assert f"Flow run: {stack['api'].removesuffix('/api')}/runs/flow-run/{failed.id}" in post["json"]["body"]
    assert post["json"]["text"].startswith(_subject(post))


# A failed verify, restore drill or disaster recovery: real runs against the module's server, each failing its own
# way, started together (one wait for all their notifications). The server commands are templates of the process
# provider (shlex-split, {port} and {data_dir} filled in): one exits with an error as a broken server would, one never
# answers /health, one interrupts the run that started it (as Ctrl-C would: the run ends Crashed).
FAILING_SERVER = "sh -c 'echo qilbeedb: cannot open {data_dir}: Corruption: bad block >&2; exit 3' qilbeedb {port}"
_PY = shlex.quote(sys.executable)
SILENT_SERVER = f"{_PY} -c 'import time; time.sleep(120)' {{data_dir}} {{port}}"
INTERRUPTING_SERVER = (f"{_PY} -c 'import os, signal, time; os.kill(os.getppid(), signal.SIGINT); time.sleep(120)' "
                       "{data_dir} {port}")
FLOW_TIMEOUT_S = 3
# After the last expected POST, how long to keep listening for a second one about the same run.
SETTLE_S = 3


def _small_repo(path: Path, backups: int) -> tuple[object, list]:
    """A file repository with small backups, written by the engine (no QilbeeDB, no Prefect)."""
    from qilbee_backup.manifest import SourceInfo
    from qilbee_backup.repository import open_repository
    from qilbee_backup.backup import backup_directory
    from tests.files import write

    repo = open_repository(str(path), must_exist=False)
    made = []
    for i in range(backups):
        snapshot = path.parent / f"{path.name}-snapshot-{i}"
        write(snapshot / "000007.sst", os.urandom(20_000))
        write(snapshot / "CURRENT", b"MANIFEST-000001\n")
        made.append(backup_directory([repo], snapshot, kind="daily", spool=path.parent / "spool",
                                     source=SourceInfo(url="http://127.0.0.1:7474", mode="online")))
    return repo, made


def _sst_blob(repo_path: Path, manifest) -> Path:
    [sha] = [f.sha256 for f in manifest.files if f.path.endswith(".sst")]
    return repo_path / "blobs" / sha[:2] / sha


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _run_of(api: str, flow_name: str, repo: str):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client(api) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    [run] = [r for r in runs if r.parameters.get("repo") == repo]
    return run


def _processes_naming(path: Path) -> list[str]:
    """The command lines of live processes with an argument under path."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = [arg.decode(errors="replace") for arg in cmdline.read_bytes().split(b"\0") if arg]
        except OSError:
            continue
        if any(arg.startswith(str(path)) for arg in args):
            found.append(" ".join(args))
    return found


def _posts_about(receiver: Receiver, run) -> list[dict]:
    return [p for p in list(receiver.posts) if f"/runs/flow-run/{run.id}" in (p["json"] or {}).get("body", "")]


@pytest.fixture(scope="module")
def failed_runs(stack, applied, tmp_path_factory):
    """Five real runs that end Failed, TimedOut or Crashed, and the POSTs about each."""
    root = tmp_path_factory.mktemp("failing")
    repos = {key: root / key for key in ("verify", "drill", "dr", "dr-timeout", "drill-crash")}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CACHE_HOME", str(root / "cache"))  # the engine's hash cache
        # verify: one backup with a truncated blob, one with a truncated manifest.
        repo, (blob_damaged, manifest_damaged) = _small_repo(repos["verify"], 2)
        _truncate(_sst_blob(repos["verify"], blob_damaged))
        _truncate(repos["verify"] / repo.manifest_key_of(manifest_damaged.backup_id))
        # drill: every backup damaged (its only backup lacks a blob).
        _, (only,) = _small_repo(repos["drill"], 1)
        _sst_blob(repos["drill"], only).unlink()
        for key in ("dr", "dr-timeout", "drill-crash"):  # intact: these fail on the instance they start
            _small_repo(repos[key], 1)
    cli = [sys.executable, "-m", "qilbee_cli"]
    commands = {
        "verify": [*cli, "verify", "--repo", str(repos["verify"])],
        "drill": [*cli, "drill", "--repo", str(repos["drill"])],
        "dr": [*cli, "dr", "--repo", str(repos["dr"]), "--data-root", str(root / "dr-data"), "--server-cmd", FAILING_SERVER],
        "dr-timeout": [sys.executable, "-c", "from flows.deployed import disaster_recovery as dr; "
                       f"dr.with_options(timeout_seconds={FLOW_TIMEOUT_S})(repo={str(repos['dr-timeout'])!r}, "
                       f"data_root={str(root / 'dr-timeout-data')!r}, "
                       f"instance={{'server_cmd': {SILENT_SERVER!r}, 'health_timeout': 120}})"],
        "drill-crash": [*cli, "drill", "--repo", str(repos["drill-crash"]), "--server-cmd", INTERRUPTING_SERVER],
    }
    procs = {}
    for key, command in commands.items():
        with open(root / f"{key}.out", "w") as out, open(root / f"{key}.err", "w") as err:
            procs[key] = subprocess.Popen(command, env=dict(stack["env"], XDG_CACHE_HOME=str(root / "cache"), TMPDIR=str(root)),
                                          cwd=REPO_ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        codes = {key: proc.wait(timeout=240) for key, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    outputs = {key: (root / f"{key}.out").read_text() + (root / f"{key}.err").read_text() for key in commands}
    flows = {"verify": "verify", "drill": "restore-drill", "dr": "disaster-recovery", "dr-timeout": "disaster-recovery",
             "drill-crash": "restore-drill"}
    runs = {key: _run_of(stack["api"], flows[key], str(repos[key])) for key in commands}
    receiver = stack["receiver"]
    deadline = time.monotonic() + 30  # for all of them; each test then checks its own
    while time.monotonic() < deadline and not all(_posts_about(receiver, run) for run in runs.values()):
        time.sleep(0.25)
    time.sleep(SETTLE_S)
    return {"root": root, "repos": {key: str(path) for key, path in repos.items()}, "codes": codes, "outputs": outputs, "runs": runs,
            "posts": {key: _posts_about(receiver, run) for key, run in runs.items()},
            "damaged": [blob_damaged.backup_id, manifest_damaged.backup_id], "only": only.backup_id}


def _the_post(failed_runs, key: str, stack) -> dict:
    """The one POST about a run, which carries the run's state message and its link."""
    run, posts = failed_runs["runs"][key], failed_runs["posts"][key]
    assert len(posts) == 1, (f"{len(posts)} webhook POSTs about the {key} run {run.name} ({run.state.name}: "
                             f"{run.state.message}): {[_subject(p) for p in posts]}; "
                             f"all: {[_subject(p) for p in stack['receiver'].posts]}; its output: {failed_runs['outputs'][key][-2000:]}")
    [post] = posts
    body = post["json"]["body"]
    assert f"Reason: {run.state.message}" in body
    assert f"Flow run: {stack['api'].removesuffix('/api')}/runs/flow-run/{run.id}" in body
    assert post["json"]["text"].startswith(_subject(post))
    return post


def test_a_failed_verify_posts_that_restorability_is_in_doubt(stack, applied, failed_runs):
    run, repo = failed_runs["runs"]["verify"], failed_runs["repos"]["verify"]
    assert failed_runs["codes"]["verify"] == 1, failed_runs["outputs"]["verify"][-3000:]
    assert run.state.name == "Failed"
    assert f"2 of 2 backup(s) in {repo} damaged: " in run.state.message
    assert all(backup_id in run.state.message for backup_id in failed_runs["damaged"])
    post = _the_post(failed_runs, "verify", stack)
    assert post["path"] == f"/hook/{applied['token']}?token={applied['token']}"  # the secret URL was used
    assert _subject(post) == f"qilbee-backup: verify {run.name} Failed: restorability of {repo} in doubt"
    body = post["json"]["body"]
    assert body.startswith(f"Flow run {run.name} of verify entered Failed at ")
    assert f": backups in {repo} are damaged or could not be checked." in body
    assert "Restorability is in doubt: until a verify of this repository passes" in body
    assert f"\nRepository: {repo}\n" in body


def test_a_failed_restore_drill_posts_that_the_last_restore_test_failed(stack, failed_runs):
    run, repo = failed_runs["runs"]["drill"], failed_runs["repos"]["drill"]
    assert failed_runs["codes"]["drill"] == 1, failed_runs["outputs"]["drill"][-3000:]
    assert run.state.name == "Failed"
    assert f"every backup in {repo} is damaged; the newest: {failed_runs['only']}" in run.state.message
    post = _the_post(failed_runs, "drill", stack)
    assert _subject(post) == f"qilbee-backup: restore drill {run.name} Failed: the last restore test failed"
    body = post["json"]["body"]
    assert body.startswith(f"The last restore test failed: flow run {run.name} of restore-drill entered Failed at ")
    assert f"nothing shows that a backup in {repo} restores to a working database" in body
    assert f"\nRepository: {repo}\n" in body


def test_a_failed_disaster_recovery_posts_an_urgent_alert(stack, failed_runs):
    run, repo = failed_runs["runs"]["dr"], failed_runs["repos"]["dr"]
    assert failed_runs["codes"]["dr"] == 1, failed_runs["outputs"]["dr"][-3000:]
    assert run.state.name == "Failed"
    assert "exited with code 3 before it was healthy" in run.state.message and "Corruption: bad block" in run.state.message
    post = _the_post(failed_runs, "dr", stack)
    assert _subject(post) == f"qilbee-backup: URGENT: disaster recovery {run.name} Failed: the database is still down"
    body = post["json"]["body"]
    assert body.startswith("URGENT: the disaster recovery did not work. QilbeeDB has not been recovered")
    assert f"\nFlow run {run.name} of disaster-recovery entered Failed at " in body
    assert f"\nRepository: {repo}\n" in body


def test_a_timed_out_disaster_recovery_posts_an_urgent_alert(stack, failed_runs):
    run = failed_runs["runs"]["dr-timeout"]
    assert run.state.name == "TimedOut" and f"exceeded timeout of {FLOW_TIMEOUT_S}" in run.state.message
    post = _the_post(failed_runs, "dr-timeout", stack)
    assert _subject(post) == f"qilbee-backup: URGENT: disaster recovery {run.name} TimedOut: the database is still down"
    assert f"\nRepository: {failed_runs['repos']['dr-timeout']}\n" in post["json"]["body"]


def test_an_interrupted_drill_posts_that_it_crashed(stack, failed_runs):
    run = failed_runs["runs"]["drill-crash"]
    assert run.state.name == "Crashed"
    assert failed_runs["codes"]["drill-crash"] == 130  # the CLI's exit code for an interrupt
    post = _the_post(failed_runs, "drill-crash", stack)
    assert _subject(post) == f"qilbee-backup: restore drill {run.name} Crashed: the last restore test failed"
    assert f"\nRepository: {failed_runs['repos']['drill-crash']}\n" in post["json"]["body"]


def test_the_failed_runs_left_no_server_running(failed_runs):
    assert _processes_naming(failed_runs["root"]) == []  # each stopped the instance it started


# The other ends a run can come to, reported through the API as a worker reports a run whose process died
# (Crashed) and the engine one that ran past its timeout (TimedOut): each automation expects all three states.
@pytest.mark.parametrize("flow_name, state_name, message", [
    ("verify", "Crashed", "Flow run infrastructure exited with non-zero status code -9."),
    ("verify", "TimedOut", "Flow run exceeded timeout of 3600 second(s)"),
    ("restore-drill", "TimedOut", "Flow run exceeded timeout of 3600 second(s)"),
    ("disaster-recovery", "Crashed", "Flow run infrastructure exited with non-zero status code -9."),
])
def test_each_failure_automation_fires_for_crashed_and_timed_out(stack, applied, flow_name, state_name, message):
    from prefect.states import Crashed, Failed, Running

    from flows.deployed import disaster_recovery, drill, verify

    flow = {"verify": verify, "restore-drill": drill, "disaster-recovery": disaster_recovery}[flow_name]
    repo = f"s3://qilbee-backups/{flow_name}-{state_name}"
    with _client(stack["api"]) as client:
        run = client.create_flow_run(flow, parameters={"repo": repo})
        client.set_flow_run_state(run.id, Running())
        end = Crashed(message=message) if state_name == "Crashed" else Failed(name="TimedOut", message=message)
        assert client.set_flow_run_state(run.id, end).status.value == "ACCEPT"
    receiver = stack["receiver"]
    post = receiver.wait_for(lambda p: p in _posts_about(receiver, run), timeout=30)
    assert post is not None, [_subject(p) for p in receiver.posts]
    expected = {"verify": f"verify {run.name} {state_name}: restorability of {repo} in doubt",
                "restore-drill": f"restore drill {run.name} {state_name}: the last restore test failed",
                "disaster-recovery": f"URGENT: disaster recovery {run.name} {state_name}: the database is still down"}
    assert _subject(post) == f"qilbee-backup: {expected[flow_name]}"
    assert f"Reason: {message}\n" in post["json"]["body"] and f"\nRepository: {repo}" in post["json"]["body"]
    if flow_name == "verify":  # it did not get to say which backups are damaged
        assert f" before it finished checking {repo}." in post["json"]["body"]
    time.sleep(1)
    assert len(_posts_about(receiver, run)) == 1


def test_the_webhook_token_appears_in_no_output(stack, applied, failed_runs):
    token = applied["token"]
    for key, output in failed_runs["outputs"].items():
        assert token not in output, key
    for post in stack["receiver"].posts:
        assert token not in json.dumps(post["json"])
    assert token not in (stack["workdir"] / "prefect-server.log").read_text()


def test_no_backup_within_the_rpo_posts_naming_the_last_good_one(stack, backup_then_drill):
    last_good = backup_then_drill["backup"]
    completed_at = last_good.end_time.timestamp()
    receiver = stack["receiver"]
    post = receiver.wait_for(lambda p: "no successful backup within the RPO" in _subject(p)
                             and last_good.name in p["json"]["body"], timeout=RPO_S + 60)
    assert post is not None, [_subject(p) for p in receiver.posts]
    assert _subject(post) == f"qilbee-backup: no successful backup within the RPO of {RPO_S}s"
    assert f"Latest completed backup: flow run {last_good.name}" in post["json"]["body"]
    # The completed backup restarted the window: the alert comes one RPO after it, not before (the late
    # bound is loose: under a loaded CI the server's trigger and action services lag by tens of seconds).
    assert completed_at + RPO_S - 1 <= post["at"] <= completed_at + RPO_S + 45
    early = [p for p in receiver.posts if "no successful backup" in _subject(p) and completed_at + 3 < p["at"] < completed_at + RPO_S - 1]
    assert early == []


# Last: it takes away what the tests above watch.
def test_delete_removes_the_automations_and_with_block_the_block(stack, applied):
    deleted = _run(stack["env"], "-m", "deployments.automations", "delete", "--with-block")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.count(" deleted (") == len(NAMES) + 1
    listed = _run(stack["env"], "-m", "deployments.automations", "list")
    assert listed.stdout.splitlines() == [f"{name}: not applied" for name in NAMES] + ["webhook block 'qilbee-backup-webhook': missing"]
