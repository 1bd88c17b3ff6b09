"""Outcomes of runs kept in the repository beside the backups: ``drills/<id>.json`` (every restore
drill) and ``verifies/<id>.json`` (every verify). They live where the backups live, not in the
Prefect database, so they survive its loss, travel with the repository (a copied bucket keeps its
history) and are read by whoever can read the backups: `status`, the metrics, the drill's trend.

One small JSON object per run, written once (never updated) under an id that sorts by time
(``YYYYMMDDTHHMMSSffffffZ-xxxxxx``: to the microsecond, two runs of one second keep their order),
so the newest N are found from one listing. In an
encrypted repository each is sealed like a manifest, under its own name (``drill-record:<id>``):
the bucket does not show which backup was drilled or how it went, and a record swapped for another
or edited fails its seal. A record that cannot be read is skipped and named, never fatal: history
is advice, the backups are what matters.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import IntegrityError, NotFound
from .repository import Repository

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1024 * 1024  # a record is a few hundred bytes; a huge object there is not ours
RECORD_ID_RE = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{6}")


def new_record_id(at: datetime) -> str:
    return f"{at.astimezone(timezone.utc):%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class DamagedRecord:
    record_id: str
    key: str
    reason: str  # one line, naming the object


class RunRecords:
    """The records of one kind of run ("drill", "verify") in one repository."""

    def __init__(self, repo: Repository, kind: str) -> None:
        self.repo, self.kind = repo, kind
        self.prefix = f"{kind}s/"
        self._key_re = re.compile(re.escape(self.prefix) + f"({RECORD_ID_RE.pattern})\\.json")

    def _key(self, record_id: str) -> str:
        return f"{self.prefix}{record_id}.json"

    def _seal_name(self, record_id: str) -> str:
        return f"{self.kind}-record:{record_id}"

    def add(self, record: dict[str, Any], at: datetime | None = None) -> str:
        """Store one record (with its id as "record_id" and its time as "recorded_at"); the id. Never
        overwrites another's."""
        self.repo.check_writable()  # never plaintext into an encrypted repository
        at = at or datetime.now(timezone.utc)
        for _ in range(5):  # a microsecond plus 24 random bits: a clash is a curiosity, not a loop
            record_id = new_record_id(at)
            data = json.dumps({**record, "record_id": record_id, "recorded_at": at.isoformat()}, sort_keys=True, default=str).encode()
            if self.repo.dest.put_bytes(self._key(record_id), self.repo.seal(data, self._seal_name(record_id)),
                                        if_absent=True):
                return record_id
        raise IntegrityError(f"{self.repo.url}: could not find a free name for a {self.kind} record under {self.prefix}")

    def listing(self) -> dict[str, int]:
        """Every record's id and stored size, from one listing (no downloads)."""
        found = {}
        for info in self.repo.dest.list(self.prefix):
            m = self._key_re.fullmatch(info.key)
            if m:
                found[m.group(1)] = info.size
            else:
                log.warning("ignoring %s/%s: not a %s record name", self.repo.url, info.key, self.kind)
        return found

    def newest(self, limit: int | None = None) -> tuple[list[dict[str, Any]], list[DamagedRecord]]:
        """The newest `limit` records (all when None), oldest first, read in parallel; and the ones
        among them that could not be read (unsealed, not JSON, not ours), named."""
        listed = self.listing()
        ids = sorted(listed)
        if limit is not None:
            ids = ids[-limit:] if limit > 0 else []
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(self._read, ids, [listed[i] for i in ids]))
        records = [o for o in outcomes if isinstance(o, dict)]
        damaged = [o for o in outcomes if isinstance(o, DamagedRecord)]
        for d in damaged:
            log.warning("skipping unreadable %s record %s: %s", self.kind, d.record_id, d.reason)
        return records, damaged

    def _read(self, record_id: str, size: int) -> dict[str, Any] | DamagedRecord | None:
        """The record, why it cannot be trusted, or None when it was removed since the listing."""
        key = self._key(record_id)
        where = f"{self.repo.url}/{key}"
        try:
            if size > MAX_RECORD_BYTES:
                raise IntegrityError(f"{where}: {size} bytes, over the {MAX_RECORD_BYTES} byte limit of a record")
            plain = self.repo.open_sealed(self.repo.dest.get_bytes(key), self._seal_name(record_id), where)
            try:
                record = json.loads(plain)
            except ValueError:
                raise IntegrityError(f"{where}: not JSON") from None
            if not isinstance(record, dict) or record.get("record_id") != record_id:
                raise IntegrityError(f"{where}: does not hold {self.kind} record {record_id}")
            return record
        except NotFound:
            return None
        except IntegrityError as exc:
            return DamagedRecord(record_id, key, str(exc))
