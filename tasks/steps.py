"""How a runbook's steps run: as Prefect tasks inside a flow run (each step visible in the UI with its
duration, retries, logs and artifacts), or as plain calls (the CLI's direct path when no Prefect API
is configured: no Prefect import, no temporary server, nothing recorded).

A runbook (flows/*.py) calls its steps (`snapshot(...)`, `upload.submit(...)`), logs through
`get_logger()` and publishes through `publish_*`; which runner carries that out is set by whoever
started it (tasks/prefect_runner.py for a flow run, `DirectRunner` otherwise). One runbook, two ways to
run: they cannot drift. No Prefect import here.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from qilbee_backup.errors import UsageError


class Step:
    """One step of a runbook: a function with a name and how often a failure is retried."""

    def __init__(self, fn: Callable[..., Any], name: str, retries: int = 0, retry_delay_seconds: Sequence[float] = (),
                 retry_if: Callable[[BaseException], bool] | None = None):
        self.fn, self.name, self.retries, self.retry_delay_seconds = fn, name, retries, tuple(retry_delay_seconds)
        self.retry_if = retry_if  # which failures a retry can cure (None: any)
        self.__doc__, self.__name__ = fn.__doc__, fn.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return current().call(self, args, kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Future:
        """Start the step alongside others (a flow run's task runner); .result() waits for it."""
        return current().submit(self, args, kwargs)

    def delay(self, attempt: int) -> float:
        delays = self.retry_delay_seconds or (0.0,)
        return delays[min(attempt, len(delays) - 1)]


def step(name: str, *, retries: int = 0, retry_delay_seconds: Sequence[float] = (),
         retry_if: Callable[[BaseException], bool] | None = None) -> Callable[[Callable], Step]:
    def make(fn: Callable) -> Step:
        return Step(fn, name, retries, retry_delay_seconds, retry_if)

    return make


class DirectRunner:
    """Steps as plain calls, retried as a flow run would retry them; nothing is published."""

    recorded = False
    log = logging.getLogger("qilbee_backup.run")

    def call(self, step: Step, args: tuple, kwargs: dict) -> Any:
        for attempt in range(step.retries + 1):
            try:
                return step.fn(*args, **kwargs)
            except Exception as exc:
                if attempt == step.retries or (step.retry_if is not None and not step.retry_if(exc)):
                    raise
                self.log.warning("%s failed (%s); retry %d of %d in %.0f s", step.name, exc, attempt + 1, step.retries,
                                 step.delay(attempt))
                time.sleep(step.delay(attempt))
        raise AssertionError("unreachable")

    def submit(self, step: Step, args: tuple, kwargs: dict) -> Future:
        # Run now: the steps submitted together (one upload per repository) are parallel inside already.
        done: Future = Future()
        try:
            done.set_result(self.call(step, args, kwargs))
        except Exception as exc:  # handed to .result(), as a task future does
            done.set_exception(exc)
        return done

    def logger(self) -> logging.Logger | logging.LoggerAdapter:
        return self.log

    def table(self, key: str, result: Any, description: str) -> None:
        """Artifacts belong to a recorded run; the CLI prints the result itself."""

    def rows(self, key: str, rows: list[dict], description: str) -> None:
        """As table."""

    def markdown(self, key: str, markdown: str, description: str) -> None:
        """As table."""

    def event(self, **event: Any) -> None:
        self.log.debug("event %s (not sent: no Prefect API)", event.get("event"))

    def pause(self, description: str, model: Any, timeout_s: float, **initial: Any) -> Any:
        raise UsageError("waiting for an approval needs a Prefect API (the UI is where a person decides): "
                         "set PREFECT_API_URL, or run without --approve")


_RUNNER: contextvars.ContextVar[Any] = contextvars.ContextVar("qilbee_runner", default=None)
_DIRECT = DirectRunner()


def current() -> Any:
    """The runner of the run in progress; plain calls when none was set."""
    return _RUNNER.get() or _DIRECT


@contextmanager
def running(runner: Any) -> Iterator[Any]:
    token = _RUNNER.set(runner)
    try:
        yield runner
    finally:
        _RUNNER.reset(token)


def get_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger: the flow or task run's in Prefect (the UI shows it), else the terminal's."""
    return current().logger()


def publish_table(key: str, result: Any, description: str) -> None:
    current().table(key, result, description)


def publish_rows(key: str, rows: list[dict], description: str) -> None:
    current().rows(key, rows, description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    current().markdown(key, markdown, description)


def emit_event(**event: Any) -> None:
    current().event(**event)


def pause_for_input(description: str, model: Any, timeout_s: float, **initial: Any) -> Any:
    """Wait for a person's answer in the Prefect UI: a form of the pydantic model's fields."""
    return current().pause(description, model, timeout_s, **initial)
