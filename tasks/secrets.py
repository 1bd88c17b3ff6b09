"""Where an API key comes from: an environment variable or a Prefect Secret block, never a flow parameter."""

from __future__ import annotations

import os

from qilbee_backup.errors import UsageError


def resolve_api_key(env_name: str | None, secret_block: str | None) -> str | None:
    if secret_block:
        from prefect.blocks.system import Secret

        try:
            return Secret.load(secret_block).get()
        except ValueError:
            raise UsageError(f"no Prefect Secret block named {secret_block!r}") from None
    if env_name:
        return os.environ.get(env_name) or None
    return None
