"""Structured flow parameters as pydantic models, so the Prefect UI shows a form with a field per
setting, its default and its description, and a bad value is refused before the run starts.

(Prefect takes a flat parameter's description from the flow docstring's `Args:` section; fields of a
model carry their own.)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qilbee_backup.errors import UsageError
from qilbee_backup.retention import parse_duration


class Retention(BaseModel):
    """Which backups of a series to keep (restic's `forget` rules, calendar buckets in UTC).

    The newest backup of a series is always kept; with no rule set, nothing is removed."""

    model_config = ConfigDict(extra="forbid")

    keep_within: str | None = Field(
        None, description="Keep every backup younger than this, counted back from the newest: 7d, 4w, 12m, 1y.",
        examples=["7d"])
    keep_last: int | None = Field(None, ge=0, description="Keep the newest N backups.")
    keep_hourly: int | None = Field(None, ge=0, description="Keep the newest backup of each of the last N hours that have one.")
    keep_daily: int | None = Field(None, ge=0, description="Keep the newest backup of each of the last N days that have one.")
    keep_weekly: int | None = Field(None, ge=0, description="Keep the newest backup of each of the last N ISO weeks that have one.")
    keep_monthly: int | None = Field(None, ge=0, description="Keep the newest backup of each of the last N months that have one.")
    keep_yearly: int | None = Field(None, ge=0, description="Keep the newest backup of each of the last N years that have one.")

    @field_validator("keep_within")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration(value)
            except UsageError as e:
                raise ValueError(str(e)) from None
        return value

    def rules(self) -> dict[str, Any]:
        """The rules that are set, as the engine's retention takes them."""
        return {k: v for k, v in self.model_dump().items() if v not in (None, 0)}


def retention_rules(retention: Retention | dict | None) -> dict[str, Any]:
    """Rules from a model, a plain mapping (called without Prefect's validation) or nothing."""
    if retention is None:
        return {}
    if isinstance(retention, Retention):
        return retention.rules()
    return Retention.model_validate(retention).rules()
