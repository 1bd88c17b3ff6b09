"""Issue 10 item 4: the engine's own log lines (DAMAGED, retries, skipped backups) are in the run's logs
in the Prefect UI, and an expected failure there is one line, not a traceback."""

from __future__ import annotations

import pytest

from qilbee_backup.errors import FailedWithReport
from qilbee_backup.manifest import SourceInfo
from qilbee_backup.repository import open_repository
from qilbee_backup.backup import backup_directory


def _logs(flow_run_id, expect: str) -> list[str]:
    """The run's logs as the UI reads them (sent in batches: flushed, then polled for `expect`)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            messages = [log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]
        if any(expect in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def test_engine_lines_reach_the_run_logs_and_expected_errors_are_one_line(tmp_path):
    from prefect.client.orchestration import get_client

    from flows.deployed import verify

    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "000001.sst").write_bytes(b"q" * 50_000)
    repo = open_repository(str(tmp_path / "repo"), must_exist=False)
    made = backup_directory([repo], snap, kind="daily", source=SourceInfo(url="http://db:7474", mode="online"),
                            spool=tmp_path / "spool")
    (manifest,) = (tmp_path / "repo" / "backups").glob(f"{made.backup_id}.*json")
    manifest.write_bytes(manifest.read_bytes()[:100])

    state = verify(repo=str(tmp_path / "repo"), read_data=True, return_state=True)
    assert state.is_failed()
    with pytest.raises(FailedWithReport):
        state.result()
    messages = _logs(state.state_details.flow_run_id, "skipping damaged")
    # Logged by the engine alone (qilbee_backup.repository), not by the runbook or its steps.
    assert any("skipping damaged" in m for m in messages), messages
    assert not any("Traceback" in m for m in messages), messages
    failure = [m for m in messages if "Encountered exception" in m]
    assert failure and "FailedWithReport(" not in failure[0] and "FailedWithReport:" in failure[0]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).state.is_failed()
