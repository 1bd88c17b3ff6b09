"""Driving an approval gate as a person does: start the flow run, wait until it is PAUSED on the session's
Prefect server, read what the resume form shows, answer it. Shared by the restore and failback tests."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable


class InThread:
    """A flow run in a thread (a paused run blocks its caller): .outcome holds "result" or "error"."""

    def __init__(self, fn: Callable[..., Any], **params: Any) -> None:
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(fn, params), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], params: dict[str, Any]) -> None:
        try:
            self.outcome["result"] = fn(**params)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.outcome["error"] = e

    def join(self, timeout: float = 180) -> dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow run did not finish after it was resumed"
        return self.outcome


def wait_paused(flow_name: str, match: Callable[[dict], bool], worker: InThread, timeout: float = 120):
    """The PAUSED run of this flow whose parameters match."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, \
        FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and worker.thread.is_alive():
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            found = next((r for r in runs if match(r.parameters)), None)
            if found is not None:
                return found
            time.sleep(0.5)
    raise AssertionError(f"the {flow_name} run never paused: {worker.outcome}")


def pause_description(flow_run_id) -> str:
    """What the resume form shows above its fields: the description of the run's pending input."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keys = client.filter_flow_run_input(flow_run_id=flow_run_id, key_prefix="paused", limit=10, exclude_keys=set())
        return " ".join(k.value for k in keys)


def resume(flow_run_id, **answer: Any) -> None:
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(flow_run_id, run_input=answer)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def stop_pid(pid: int) -> None:
    """A DR instance outlives its flow by design: a test stops its own, by PID."""
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
