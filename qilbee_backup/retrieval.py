"""Objects in S3's archive storage classes: can one be read now, start its retrieval, wait for it.

GLACIER (Flexible Retrieval) and DEEP_ARCHIVE objects cannot be read until a retrieval
(RestoreObject) has made a temporary readable copy, which takes minutes to days:

    GLACIER        Expedited 1-5 minutes, Standard 3-5 hours, Bulk 5-12 hours
    DEEP_ARCHIVE   Standard within 12 hours, Bulk within 48 hours (no Expedited)

INTELLIGENT_TIERING objects that moved to its archive tiers (HeadObject's ArchiveStatus) need the
same. GLACIER_IR and every other class read at once. HeadObject tells where an object stands:
its StorageClass, and a Restore header, 'ongoing-request="true"' while a retrieval runs and
'ongoing-request="false", expiry-date="..."' once the copy is readable (until that date).

A file repository has no storage classes: everything in it is readable.

S3 access goes through the S3Destination's own client, bucket and prefix (its public attributes),
so endpoint, credentials and retries are the destination's.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from .destinations.base import Destination
from .destinations.s3 import S3Destination
from .destinations.url import check_key
from .errors import DestinationError, NotFound, QilbeeBackupError, UsageError

log = logging.getLogger(__name__)

RETRIEVAL_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
TIERS = ("Expedited", "Standard", "Bulk")
TYPICAL = {
    ("GLACIER", "Expedited"): "typically 1-5 minutes",
    ("GLACIER", "Standard"): "typically 3-5 hours",
    ("GLACIER", "Bulk"): "typically 5-12 hours",
    ("DEEP_ARCHIVE", "Standard"): "within 12 hours",
    ("DEEP_ARCHIVE", "Bulk"): "within 48 hours",
}
_RESTORE_HEADER = re.compile(r'ongoing-request="(true|false)"(?:\s*,\s*expiry-date="([^"]*)")?')


class RetrievalPending(QilbeeBackupError):
    """The object is in an archive storage class and its retrieval has not finished: run again later.

    Exit code 75 (EX_TEMPFAIL): a script can tell "try again later" from a failure.
    """

    exit_code = 75


@dataclass(frozen=True)
class ColdState:
    """Where one object stands. storage_class is "STANDARD" when S3 names none (and for files)."""

    key: str
    size: int
    storage_class: str
    needs_retrieval: bool  # its class (or Intelligent-Tiering archive tier) needs a RestoreObject first
    restore: str | None = None  # None: no retrieval asked (or its copy expired); "ongoing"; "done"
    expiry: str | None = None  # when a retrieved copy stops being readable, as S3 says it
    archive_status: str | None = None  # Intelligent-Tiering: ARCHIVE_ACCESS | DEEP_ARCHIVE_ACCESS

    @property
    def readable(self) -> bool:
        return not self.needs_retrieval or self.restore == "done"


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
    """One HeadObject (S3) or nothing at all (files); NotFound when the object is missing."""
    if not isinstance(dest, S3Destination):
        info = dest.stat(key)
        if info is None:
            raise NotFound(f"{dest.url}/{key}: no such object")
        return ColdState(key, info.size, "STANDARD", needs_retrieval=False)
    head = _call(dest, "HeadObject", key, dest.client.head_object, Bucket=dest.bucket, Key=_s3_key(dest, key))
    storage_class = head.get("StorageClass") or "STANDARD"
    archive_status = head.get("ArchiveStatus")
    restore, expiry = None, None
    match = _RESTORE_HEADER.search(head.get("Restore") or "")
    if match:
        restore = "ongoing" if match.group(1) == "true" else "done"
        expiry = match.group(2)
    needs = storage_class in RETRIEVAL_CLASSES or bool(archive_status)
    return ColdState(key, head["ContentLength"], storage_class, needs, restore, expiry, archive_status)


def start_retrieval(dest: Destination, state: ColdState, *, days: int = 7, tier: str = "Standard") -> ColdState:
    """Ask S3 for a readable copy of the object (RestoreObject); a retrieval already running is fine."""
    if not isinstance(dest, S3Destination) or state.readable:
        return state
    if state.storage_class == "DEEP_ARCHIVE" and tier == "Expedited":
        raise UsageError("DEEP_ARCHIVE has no Expedited retrieval: use --retrieval-tier Standard (within 12 h) or Bulk (within 48 h)")
    request: dict[str, Any] = {"GlacierJobParameters": {"Tier": tier}}
    if not state.archive_status:
        # Intelligent-Tiering's archive tiers move the object back for good: S3 refuses Days there.
        request["Days"] = days
    try:
        _call(dest, "RestoreObject", state.key, dest.client.restore_object, Bucket=dest.bucket,
              Key=_s3_key(dest, state.key), RestoreRequest=request, passthrough=("RestoreAlreadyInProgress",))
    except ClientError as e:  # only the passthrough code comes out raw
        if _code(e) != "RestoreAlreadyInProgress":
            raise  # pragma: no cover - _call converts every other code
    log.info("%s/%s: retrieval from %s started (%s tier)", dest.url, state.key, state.storage_class, tier)
    return dataclasses.replace(state, restore="ongoing", expiry=None)


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


# -- S3 calls ------------------------------------------------------------------------------------


def _s3_key(dest: S3Destination, key: str) -> str:
    check_key(key)
    return f"{dest.prefix}/{key}" if dest.prefix else key


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def _call(
    dest: S3Destination, operation: str, key: str, method: Callable[..., Any], *, passthrough: tuple[str, ...] = (), **kwargs: Any
) -> Any:
    """One S3 call; its failure as one line naming the object and S3's code, never a credential."""
    where = f"{dest.url}/{key}"
    try:
        return method(**kwargs)
    except ClientError as e:
        code = _code(e)
        if code in passthrough:
            raise
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise NotFound(f"{where}: no such object") from None
        if code == "GlacierExpeditedRetrievalNotAvailable":
            raise DestinationError(f"{where}: S3 has no Expedited retrieval capacity right now; use the Standard tier") from None
        message = " ".join(str(e.response.get("Error", {}).get("Message", "")).split())
        raise DestinationError(f"{where}: {operation} failed: {code} (HTTP {status}){': ' + message if message else ''}") from None
    except BotoCoreError as e:
        raise DestinationError(f"{where}: {operation} failed: {type(e).__name__}: {' '.join(str(e).split())}") from None
