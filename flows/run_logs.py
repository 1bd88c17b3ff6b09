"""Run logs an operator can read: an expected failure (a QilbeeBackupError: bad input, damage found,
an unreachable server) is the one line that says what went wrong, in the UI as on the terminal;
only an unexpected error keeps its traceback, which is what a developer needs to fix it."""

from __future__ import annotations

import logging

from qilbee_backup.errors import QilbeeBackupError

# Where Prefect's engines log a failed run or task with exc_info=True.
ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine", "prefect.flow_engine", "prefect.task_engine")


class ExpectedErrorsInOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, QilbeeBackupError):
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = ExpectedErrorsInOneLine()


def install() -> None:
    """Idempotent: a logger holds a filter once."""
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
