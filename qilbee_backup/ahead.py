"""Opening repositories ahead: a command knows its repositories' URLs long before it opens them (it
still imports its runbook and checks its input). Opening them meanwhile, in a thread, hides the KDF
(scrypt runs outside the GIL) and the first requests behind that work. This module is kept light
(no import of the repository code) so the thread starts at once and imports that code itself.

Only a success is kept: a failure is left for open_repository to meet again in the caller's thread,
so errors, and where they surface, are what they would be without it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

_PENDING: dict[str, tuple[dict[str, Any], Future]] = {}
_THREADS: list[threading.Thread] = []


def open_ahead(url: str, **options: Any) -> None:
    """Start opening (and, with a passphrase at hand that needs no prompt, unlocking) the repository at
    url in a daemon thread (a command that stops first does not wait for it); reads only.
    repository.open_repository(url, **the same options) takes it."""
    if url in _PENDING:
        return
    from . import key_cache

    key_cache.enable()  # this process opens ahead: the key that opens a repository is worth remembering
    future: Future = Future()

    def work() -> None:
        try:
            from .repository import opened_early

            future.set_result(opened_early(url, options))
        except BaseException as exc:  # noqa: BLE001 - the caller opens it itself and meets it there
            future.set_exception(exc)

    _PENDING[url] = (dict(options), future)
    thread = threading.Thread(target=work, name="open-ahead", daemon=True)
    _THREADS.append(thread)
    thread.start()


def take(url: str, options: dict[str, Any]) -> Any | None:
    """What was opened ahead for url with these options, once ready; None if nothing (or it failed)."""
    found = _PENDING.pop(url, None)
    if found is None or found[0] != options:
        return None
    try:
        return found[1].result()
    except Exception:  # noqa: BLE001 - opened again by the caller, where the error is raised as always
        return None


def forget(settle_s: float = 5.0) -> None:
    """Drop what was opened ahead and not taken (a command ends; the next must not see stale state),
    after waiting up to settle_s for the threads still at work: a daemon thread that writes to stderr
    (botocore logs as it makes a client) while the interpreter exits can abort the process, and a
    command refused for bad input must still exit 2."""
    deadline = time.monotonic() + settle_s
    for thread in _THREADS:
        thread.join(max(0.0, deadline - time.monotonic()))
    _THREADS[:] = [t for t in _THREADS if t.is_alive()]
    _PENDING.clear()
    from . import key_cache

    key_cache.enable(False)  # the command is over (a test may run many in one process)
