"""The operator's view, looked at in a real browser: a Prefect server with its UI, the flows run as an
operator runs them (the CLI through the API; status and list as the deployments run them), prefect.yaml's
on-demand deployments registered, a DR and a failback waiting for approval; then headless Chromium
(Debian's `chromium`, driven by playwright without a browser download) opens the UI an operator opens
(Prefect's default, the V2 UI) and checks what a person sees:

- the status report (markdown artifact): the verdict and the sources table;
- the drill report: the RTO trend table and its chart, an inline SVG image that the browser decoded;
- the backup list (table artifact): the backup;
- the restore deployment's run form: the target, the backup, the approval switch, described;
- a paused failback: the resume form shows what is approved (the DNS switch, the figures side by side),
  and answering it in the browser decides the run: declined changes nothing, approved switches DNS back
  and stops the DR instance.

Each page is saved as a PNG; with QILBEE_SCREENSHOTS=DIR they are also copied there (the pictures in
docs/screenshots/ are made so: `QILBEE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest
tests/e2e/test_ui_screenshots.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e import REPO_ROOT, prefect_env
from tests.plugins.emulator import EmulatorProcess, free_port
from tests.plugins.prefect_server import prefect_server, stop_process

pytestmark = pytest.mark.timeout(900)

CHROMIUM = "/usr/bin/chromium"  # Debian's package: playwright drives it, nothing is downloaded
SHOTS_ENV = "QILBEE_SCREENSHOTS"
RECORD = "db.qilbee.test"
PRIMARY_ADDRESS, DR_ADDRESS = "127.0.0.1", "127.0.0.2"
DRILLS = 3
WIDTH = 1400


@dataclass
class Stack:
    ui: str  # the UI's root (the V2 UI is served under /v2)
    api: str
    env: dict
    repo: str
    hosts: Path
    source: str = ""
    dr: dict = field(default_factory=dict)
    shots: Path = Path()

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "qilbee_cli", *args], env=self.env, cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr[-2000:]}"
        return done

    def python(self, code: str) -> None:
        done = subprocess.run([sys.executable, "-c", code], env=self.env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-2000:]

    def artifact_id(self, key: str) -> str:
        found = httpx.post(f"{self.api}/artifacts/filter",
                           json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}).json()
        assert found, f"no artifact {key}"
        return found[0]["id"]

    def deployment_id(self, name: str) -> str:
        found = [d for d in httpx.post(f"{self.api}/deployments/filter", json={}).json() if d["name"] == name]
        assert len(found) == 1, f"deployment {name}: {found}"
        return found[0]["id"]

    def hosts_address(self) -> list[str]:
        return [line.split()[0] for line in self.hosts.read_text().splitlines() if line.split()[1:] == [RECORD]]


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Chromium is not installed (apt-get install chromium): the UI cannot be looked at")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with sync_api.sync_playwright() as playwright:
        # As root in a container Chromium's own sandbox cannot start; the pages are our own server's, on loopback.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(browser, tmp_path_factory):
    work = tmp_path_factory.mktemp("ui")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    with prefect_server(work, port=port, PREFECT_UI_API_URL=api) as api:
        data, primary_port = work / "primary", free_port()
        primary = EmulatorProcess(data, primary_port, ["--data-dir", str(data), "--host", "127.0.0.1", "--port",
                                                       str(primary_port), "--seed-nodes", "300"], work / "primary.log").start()
        stack = Stack(ui=api.removesuffix("/api"), api=api, env=prefect_env(api, work / "client-home"),
                      repo=str(work / "repo"), hosts=work / "hosts", shots=work / "screenshots")
        stack.shots.mkdir()
        try:
            # As an operator runs them: each CLI command a flow run of this server, with its artifacts.
            stack.cli("backup", "--source", primary.url, "--repo", stack.repo)
            stack.cli("verify", "--repo", stack.repo)
            for _ in range(DRILLS):
                stack.cli("drill", "--repo", stack.repo)
            # status and list are read-only on the command line (never a flow run): run as their deployments run them.
            stack.python(f"from flows import deployed; deployed.list_backups(repo={stack.repo!r}); "
                         f"deployed.status(repos=[{stack.repo!r}])")
            # prefect.yaml's on-demand deployments, as `serve` registers them.
            stack.python("from pathlib import Path\n"
                         "from prefect.flows import load_flow_from_entrypoint\n"
                         "from flows.serve import load_deployments\n"
                         "for spec in load_deployments(Path('prefect.yaml'), ['restore', 'list-backups', 'failback']):\n"
                         "    flow = load_flow_from_entrypoint(spec['entrypoint'])\n"
                         "    flow.to_deployment(name=spec['name'], parameters=spec['parameters'],\n"
                         "                       description=spec['description'], tags=spec['tags']).apply()\n")
            stack.hosts.write_text(f"127.0.0.1 localhost\n{PRIMARY_ADDRESS} {RECORD}\n")
            stack.dr = json.loads(stack.cli("dr", "--repo", stack.repo, "--data-root", str(work / "dr"), "--dns", "hosts",
                                            "--record", RECORD, "--address", DR_ADDRESS, "--hosts-file", str(stack.hosts),
                                            "--json").stdout)
            assert stack.hosts_address() == [DR_ADDRESS]
            stack.source = stack.dr["source"]  # the database's name in the repository: its artifacts' keys
            yield stack
        finally:
            pid = (stack.dr.get("instance") or {}).get("pid")
            if pid and _alive(pid):
                os.kill(pid, 15)  # the DR instance: ours, by its PID
            primary.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "zombie" not in Path(f"/proc/{pid}/status").read_text()


def _page(browser, url: str, height: int = 1000, wait_for: str | tuple[str, ...] | None = None):
    """The page once every text in wait_for shows: the UI renders an artifact's markdown in parts, so
    waiting for its first line alone can read a page whose tables are not there yet (seen under load)."""
    page = browser.new_page(viewport={"width": WIDTH, "height": height}, color_scheme="light")
    page.goto(url)
    for text in (wait_for,) if isinstance(wait_for, str) else wait_for or ():
        page.get_by_text(text).first.wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    return page


def _save(stack: Stack, page_or_locator, name: str, whole: bool = False) -> Path:
    """A screenshot; whole: the whole page, taken in a window as tall as the page (a full-page capture of a
    scrolled page draws the fixed side bar where the scroll left it)."""
    path = stack.shots / name
    if whole:
        page = page_or_locator
        page.evaluate("window.scrollTo(0, 0)")
        page.set_viewport_size({"width": WIDTH, "height": page.evaluate("document.documentElement.scrollHeight")})
        page.wait_for_timeout(300)
    page_or_locator.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000, f"{name} is no picture"
    target = os.environ.get(SHOTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    return path


def test_the_status_report_reads_ready_with_its_sources(stack, browser):
    page = _page(browser, f"{stack.ui}/v2/artifacts/artifact/{stack.artifact_id('backup-status')}",
                 wait_for=("Backup status", "Sources", "drills recorded", stack.source))
    main = page.inner_text("body")
    assert "READY: 1 source recoverable within the targets" in main
    assert "Sources" in main and stack.source in main and "drills recorded" in main
    assert page.get_by_role("table").count() >= 2  # markdown tables rendered as tables, not as pipes
    _save(stack, page, "status-artifact.png", whole=True)


def test_the_drill_report_shows_the_rto_trend_chart(stack, browser):
    from qilbee_backup.report import artifact_key

    key = artifact_key("restore-drill-report", stack.source)
    page = _page(browser, f"{stack.ui}/v2/artifacts/artifact/{stack.artifact_id(key)}",
                 wait_for=("Restore drill of backup", f"Restore drills (the last {DRILLS})"))
    assert f"Restore drills (the last {DRILLS})" in page.inner_text("body")
    chart = page.locator('img[src^="data:image/svg+xml;base64,"]')
    assert chart.count() == 1, "the RTO chart is not in the page"
    chart.scroll_into_view_if_needed()
    decoded = chart.evaluate("img => ({complete: img.complete, width: img.naturalWidth, height: img.naturalHeight, "
                             "shown: img.getBoundingClientRect().width, alt: img.alt})")
    assert decoded == {"complete": True, "width": 360, "height": 120, "shown": 360,
                       "alt": f"RTO of the last {DRILLS} drills"}, decoded  # decoded by the browser, drawn at its size
    _save(stack, page, "drill-report-rto-trend.png", whole=True)


def test_the_backup_list_is_a_table(stack, browser):
    page = _page(browser, f"{stack.ui}/v2/artifacts/artifact/{stack.artifact_id('backup-list')}",
                 wait_for=stack.dr["backup_id"])
    table = page.get_by_role("table").first
    text = table.inner_text()
    assert stack.dr["backup_id"] in text and stack.source in text
    _save(stack, page, "backup-list-artifact.png")


def test_the_restore_run_form_asks_for_the_target_and_approval(stack, browser):
    page = _page(browser, f"{stack.ui}/v2/deployments/deployment/{stack.deployment_id('restore')}/run", height=2600,
                 wait_for="Directory to restore into")
    body = page.inner_text("body")
    for label in ("repo", "data_dir", "backup (Optional)", "replace (Optional)", "approve (Optional)"):
        assert label in body, label
    assert "Pause before data_dir (or the container) is touched until a person decides in the Prefect UI" in body
    assert page.locator("textarea").nth(1).input_value() == "/var/lib/qilbeedb/data"  # prefect.yaml's target
    switches = page.get_by_role("switch")
    assert "true" in [switches.nth(i).get_attribute("aria-checked") for i in range(switches.count())]  # approve: ticked
    _save(stack, page, "restore-run-form.png", whole=True)


def test_a_paused_failback_is_decided_in_the_browser(stack, browser):
    pid = stack.dr["instance"]["pid"]
    # Declined in the browser: nothing changes.
    shown, done = _answer_failback(stack, browser, approve=False, decided_by="carol@example.com",
                                   note="primary not synced yet", screenshot="failback-approval.png")
    assert f"Switch {RECORD} back from {DR_ADDRESS} to {PRIMARY_ADDRESS}?" in shown
    assert "primary ≥ DR" in shown and "After the switch the DR instance is stopped" in shown
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "qilbee-backup: error: the failback was declined by carol@example.com (primary not synced yet); nothing "
        "changed: DNS and the DR instance are as they were")
    assert stack.hosts_address() == [DR_ADDRESS] and _alive(pid)

    # Approved in the browser: DNS goes back to the primary, the DR instance stops.
    _, done = _answer_failback(stack, browser, approve=True, decided_by="carol@example.com", note="synced, checked")
    assert done.returncode == 0, done.stderr[-2000:]
    assert stack.hosts_address() == [PRIMARY_ADDRESS] and not _alive(pid)
    assert f"{RECORD} → {PRIMARY_ADDRESS}" in done.stdout and "approved by carol@example.com" in done.stdout

    from qilbee_backup.report import artifact_key

    key = artifact_key("failback-report", stack.source)
    done_line = f"done: {RECORD} → {PRIMARY_ADDRESS}, the primary"
    page = _page(browser, f"{stack.ui}/v2/artifacts/artifact/{stack.artifact_id(key)}",
                 wait_for=("Failback of recovery", done_line))
    assert done_line in page.inner_text("body")
    _save(stack, page, "failback-report.png", whole=True)


def _answer_failback(stack: Stack, browser, *, approve: bool, decided_by: str, note: str,
                     screenshot: str | None = None) -> tuple[str, subprocess.CompletedProcess]:
    """Start `failback --approve`, answer its resume form in the browser; (what the form showed, the CLI's outcome)."""
    log = stack.shots / f"failback-{time.monotonic_ns()}"
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "qilbee_cli", "failback", "--repo", stack.repo, "--approve"],
                                env=stack.env, cwd=REPO_ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        run_id = _paused_run(stack, "failback", proc)
        page = _page(browser, f"{stack.ui}/v2/runs/flow-run/{run_id}", height=2000, wait_for="Paused")
        page.get_by_role("button", name="Open menu").first.click()
        page.get_by_role("menuitem", name="Resume").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Decided By").wait_for()
        shown = " ".join(dialog.inner_text().split())
        switch = dialog.get_by_role("switch")
        assert switch.get_attribute("aria-checked") == "false"  # the default is to decline
        if approve:
            switch.click()
            assert switch.get_attribute("aria-checked") == "true"
        fields = dialog.locator("textarea")
        fields.nth(0).fill(decided_by)
        fields.nth(1).fill(note)
        if screenshot:
            _save(stack, dialog, screenshot)
        dialog.get_by_role("button", name="Resume").click()
        proc.wait(180)
    finally:
        stop_process(proc)
    return shown, subprocess.CompletedProcess(proc.args, proc.returncode, Path(f"{log}.out").read_text(),
                                              Path(f"{log}.err").read_text())


def _paused_run(stack: Stack, flow: str, proc: subprocess.Popen, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        runs = httpx.post(f"{stack.api}/flow_runs/filter", json={
            "flows": {"name": {"any_": [flow]}}, "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}).json()
        if runs:
            return runs[0]["id"]
        time.sleep(0.5)
    raise AssertionError(f"no paused {flow} run (the command exited with {proc.returncode})")
