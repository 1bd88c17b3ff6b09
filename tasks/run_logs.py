"""Run logs an operator can read.

- The engine's own lines (retries, DAMAGED, skipped backups, lock takeovers) go to the run's logs in
  the Prefect UI, not only to the terminal of whoever ran it.
- An expected failure (a QilbeeBackupError: bad input, damage found, an unreachable server) is the
  one line that says what went wrong, in the UI as on the terminal; only an unexpected error keeps
  its traceback, which is what a developer needs to fix it.
"""

from __future__ import annotations

import logging

from qilbee_backup.errors import QilbeeBackupError

ENGINE_LOGGER = "qilbee_backup"
# Where Prefect's engines log a failed run or task with exc_info=True.
PREFECT_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine", "prefect.flow_engine", "prefect.task_engine")


class ExpectedErrorsInOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, QilbeeBackupError):
            record.exc_info, record.exc_text = None, None
        if isinstance(record.args, tuple) and any(isinstance(a, QilbeeBackupError) for a in record.args):
            # Prefect logs the exception with %r: the message, not a Python repr, is what a person reads.
            record.args = tuple(_said(a) if isinstance(a, QilbeeBackupError) else a for a in record.args)
        return True


class _Said(str):
    """An error as its message, also where a log line formats it with %r."""

    def __repr__(self) -> str:
        return str(self)


def _said(exc: QilbeeBackupError) -> _Said:
    return _Said(f"{type(exc).__name__}: {exc}")


class InsideARun(logging.Filter):
    """Only records logged inside a flow or task run go to the API (elsewhere there is no run to log to)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


_ONE_LINE = ExpectedErrorsInOneLine()
_installed = False


def install() -> None:
    """Once per process: filter Prefect's failure logs, and send the engine's logs to the run."""
    global _installed
    if _installed:
        return
    from prefect.logging.handlers import APILogHandler

    for name in PREFECT_LOGGERS:
        logging.getLogger(name).addFilter(_ONE_LINE)
    to_run = APILogHandler()
    to_run.addFilter(InsideARun())
    to_run.addFilter(_ONE_LINE)
    engine = logging.getLogger(ENGINE_LOGGER)
    engine.addHandler(to_run)
    if engine.level == logging.NOTSET or engine.level > logging.INFO:
        engine.setLevel(logging.INFO)
    _installed = True
