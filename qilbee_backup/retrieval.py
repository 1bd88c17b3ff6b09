"""Objects in S3's archive storage classes: can one be read now, start its retrieval, wait for it.

GLACIER (Flexible Retrieval) and DEEP_ARCHIVE objects cannot be read until a retrieval
(RestoreObject) has made a temporary readable copy, which takes minutes to days:

    GLACIER        Expedited 1-5 minutes, Standard 3-5 hours, Bulk 5-12 hours
    DEEP_ARCHIVE   Standard within 12 hours, Bulk within 48 hours (no Expedited)

INTELLIGENT_TIERING objects that moved to its archive tiers (HeadObject's ArchiveStatus) need the
same. GLACIER_IR and every other class read at once.

This module is the orchestration (options, waiting, polling, what to tell the operator); the
destination does the asking, through its interface (Destination.object_state, start_retrieval):
S3Destination with HeadObject and RestoreObject, with its own endpoint, credentials and retries.
A file repository has no storage classes: everything in it is readable.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from .destinations.base import ColdState, Destination
from .errors import QilbeeBackupError, UsageError

__all__ = [
    "TIERS", "TYPICAL", "ColdState", "RetrievalPending", "check_retrieval_options", "ensure_readable",
    "object_state", "start_retrieval",
]

log = logging.getLogger(__name__)

TIERS = ("Expedited", "Standard", "Bulk")
TYPICAL = {
    ("GLACIER", "Expedited"): "typically 1-5 minutes",
    ("GLACIER", "Standard"): "typically 3-5 hours",
    ("GLACIER", "Bulk"): "typically 5-12 hours",
    ("DEEP_ARCHIVE", "Standard"): "within 12 hours",
    ("DEEP_ARCHIVE", "Bulk"): "within 48 hours",
}


class RetrievalPending(QilbeeBackupError):
    """The object is in an archive storage class and its retrieval has not finished: run again later.

    Exit code 75 (EX_TEMPFAIL): a script can tell "try again later" from a failure.
    """

    exit_code = 75


def check_retrieval_options(*, wait_s: float, poll_s: float, days: int, tier: str) -> None:
    """UsageError (one line) for a retrieval option that cannot work, before anything is asked of S3."""
    problems = []
    if tier not in TIERS:
        problems.append(f"retrieval tier must be one of {', '.join(TIERS)}, not {tier!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        problems.append(f"retrieval days must be a whole number of days >= 1, not {days!r}")
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or wait_s < 0:
        problems.append(f"retrieval wait must be a number of seconds >= 0, not {wait_s!r}")
    if isinstance(poll_s, bool) or not isinstance(poll_s, (int, float)) or poll_s <= 0:
        problems.append(f"retrieval poll interval must be a positive number of seconds, not {poll_s!r}")
    if problems:
        raise UsageError("; ".join(problems))


def object_state(dest: Destination, key: str) -> ColdState:
    """Where the object stands (S3: one HeadObject; files: nothing asked); NotFound when it is missing."""
    return dest.object_state(key)


def start_retrieval(dest: Destination, state: ColdState, *, days: int = 7, tier: str = "Standard") -> ColdState:
    """Ask the destination for a readable copy of the object; a retrieval already running is fine."""
    return dest.start_retrieval(state, days=days, tier=tier)


def ensure_readable(
    dest: Destination,
    key: str,
    *,
    wait_s: float,
    poll_s: float = 60.0,
    days: int = 7,
    tier: str = "Standard",
    on_poll: Callable[[ColdState, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ColdState:
    """The object's state once it can be read: starts its retrieval if it needs one, then waits.

    wait_s=0 does not wait: RetrievalPending (one line, exit 75) says the retrieval was started (or
    is still running) and to run again later. Otherwise S3 is asked every poll_s seconds until the
    copy is readable; after wait_s, RetrievalPending says so (the retrieval itself goes on in S3).
    on_poll(state, waited_s) is called after each look that found it still running.
    """
    check_retrieval_options(wait_s=wait_s, poll_s=poll_s, days=days, tier=tier)
    state = object_state(dest, key)
    if state.readable:
        return state
    where = f"{dest.url}/{key}"
    started_now = state.restore is None
    if started_now:
        state = start_retrieval(dest, state, days=days, tier=tier)
    if wait_s <= 0:
        raise RetrievalPending(_pending_message(where, state, started_now, days, tier, None))
    begun = clock()
    deadline = begun + wait_s
    while True:
        sleep(max(0.0, min(poll_s, deadline - clock())))
        state = object_state(dest, key)
        if state.readable:
            log.info("%s: retrieved from %s after %.0f s", where, state.storage_class, clock() - begun)
            return state
        if state.restore is None:
            # The copy expired (or S3 dropped the request) between two looks: ask again.
            state = start_retrieval(dest, state, days=days, tier=tier)
        waited = clock() - begun
        if on_poll is not None:
            on_poll(state, waited)
        if clock() >= deadline:
            raise RetrievalPending(_pending_message(where, state, started_now, days, tier, waited))


def _pending_message(where: str, state: ColdState, started_now: bool, days: int, tier: str, waited: float | None) -> str:
    cls = state.archive_status or state.storage_class
    if waited is not None:
        return (f"{where} is in {cls} and its retrieval is still in progress after waiting {waited:.0f} s; it goes on in S3: "
                "run the restore again later, or with a longer retrieval wait")
    if started_now:
        typical = TYPICAL.get((state.storage_class, tier), "this can take hours")
        return (f"{where} is in {cls}: retrieval started ({tier} tier, {typical}; the copy stays readable {days} days); "
                "run the restore again once it has finished, or give a retrieval wait to wait for it")
    return f"{where} is in {cls} and its retrieval is still in progress; run the restore again later, or give a retrieval wait"
