"""A person's decision before a runbook changes what serves production (a restore that replaces data,
a failback's DNS switch): the run pauses, the Prefect UI shows what is to be approved and a form with
*approve* unticked, and the answer, who gave it and when go into the result. The same gate as the
disaster recovery's (flows/disaster_recovery.py). Without a Prefect API there is nobody to ask: the
direct runner refuses (a UsageError) before anything is touched."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from tasks.steps import pause_for_input


def ask(text: str, form: type[BaseModel], timeout_s: float) -> dict[str, Any]:
    """Pause for the decision; {approved, decided_by, note, asked_at, decided_at}. No answer within
    timeout_s: the run fails, as a paused DR does."""
    asked = datetime.now(timezone.utc)
    answer = pause_for_input(text, form, timeout_s)
    return {"approved": bool(answer.approve), "decided_by": answer.decided_by or "(not given)", "note": answer.note,
            "asked_at": asked.isoformat(), "decided_at": datetime.now(timezone.utc).isoformat()}


def declined(what: str, approval: dict[str, Any], consequence: str) -> str:
    """The one line a declined run fails with: what was declined, by whom, why, what that left."""
    return (f"{what} was declined by {approval['decided_by']}" + (f" ({approval['note']})" if approval["note"] else "")
            + f"; {consequence}")
