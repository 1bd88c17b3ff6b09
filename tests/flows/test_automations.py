"""Notifications as Prefect automations, end to end: a real `prefect server start` (triggers and actions
services on, proactive triggers evaluated every second), the real apply command, real backup and drill
flow runs, and a webhook receiver on 127.0.0.1 that records every POST."""

from __future__ import annotations

import json
import os
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
NAMES = ["qilbee-backup-failed", "qilbee-backup-missing", "qilbee-recovery-rto-missed", "qilbee-recovery-rpo-missed"]


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
    assert first.stdout.count(" created (") == 4
    # Nothing changed, so nothing is touched: an update would drop the armed RPO window.
    assert second.stdout.count(" unchanged (") == 4

    with _client(stack["api"]) as client:
        for name in NAMES:
            assert len(client.read_automations_by_name(name)) == 1, name
        block = client.read_block_document_by_name("qilbee-backup-webhook", "custom-webhook", include_secrets=False)
    assert block.data["url"] == "{{webhook_url}}"
    assert applied["token"] not in json.dumps(block.data, default=str)

    listed = _run(stack["env"], "-m", "deployments.automations", "list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split(":")[0] for line in listed.stdout.splitlines()[:4]] == NAMES
    assert all(": enabled (" in line for line in listed.stdout.splitlines()[:4])


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
        assert reapplied.stdout.count(" unchanged (") == 3 and applied["token"] not in reapplied.stdout + reapplied.stderr
        repo = str(workdir / "repo")
        run = _run(stack["env"], "-c", "from flows.backup import backup; from flows.drill import drill; "
                   f"made = backup(source={emulator.url!r}, repos=[{repo!r}], kind='daily'); "
                   f"drill(repo={repo!r}, rto_target_s=0.001, rpo_target_s=0.001); "
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
    run = _run(stack["env"], "-c", "from flows.backup import backup; backup(repos=['nosuch://bucket/qilbee'])")
    assert run.returncode != 0
    [failed] = _flow_runs(stack["api"], "backup", "FAILED")

    post = stack["receiver"].wait_for(lambda p: failed.name in _subject(p), timeout=30)
    assert post is not None, f"no webhook POST for {failed.name}; got {[_subject(p) for p in stack['receiver'].posts]}"
    assert post["path"] == f"/hook/{applied['token']}?token={applied['token']}"  # the secret URL was used
    assert _subject(post) == f"qilbee-backup: backup {failed.name} Failed"
    assert "Reason: Flow run encountered an exception: UsageError: bad repository URL 'nosuch://bucket/qilbee'" in post["json"]["body"]
    assert "repositories: nosuch://bucket/qilbee" in post["json"]["body"]
    assert f"Flow run: {stack['api'].removesuffix('/api')}/runs/flow-run/{failed.id}" in post["json"]["body"]
    assert post["json"]["text"].startswith(_subject(post))


def test_no_backup_within_the_rpo_posts_naming_the_last_good_one(stack, backup_then_drill):
    last_good = backup_then_drill["backup"]
    completed_at = last_good.end_time.timestamp()
    receiver = stack["receiver"]
    post = receiver.wait_for(lambda p: "no successful backup within the RPO" in _subject(p)
                             and last_good.name in p["json"]["body"], timeout=RPO_S + 30)
    assert post is not None, [_subject(p) for p in receiver.posts]
    assert _subject(post) == f"qilbee-backup: no successful backup within the RPO of {RPO_S}s"
    assert f"Latest completed backup: flow run {last_good.name}" in post["json"]["body"]
    # The completed backup restarted the window: the alert comes one RPO after it, not before.
    assert completed_at + RPO_S - 1 <= post["at"] <= completed_at + RPO_S + 15
    early = [p for p in receiver.posts if "no successful backup" in _subject(p) and completed_at + 3 < p["at"] < completed_at + RPO_S - 1]
    assert early == []


# Last: it takes away what the tests above watch.
def test_delete_removes_the_automations_and_with_block_the_block(stack, applied):
    deleted = _run(stack["env"], "-m", "deployments.automations", "delete", "--with-block")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.count(" deleted (") == 5
    listed = _run(stack["env"], "-m", "deployments.automations", "list")
    assert listed.stdout.splitlines() == [f"{name}: not applied" for name in NAMES] + ["webhook block 'qilbee-backup-webhook': missing"]
