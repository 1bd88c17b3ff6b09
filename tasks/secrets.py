"""Where secrets come from: an environment variable or a Prefect Secret block, never a flow parameter."""

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


PASSWORD_SECRET_ENV = "QILBEE_PASSWORD_SECRET"  # names the Secret block holding a repository's passphrase
DEFAULT_PASSWORD_SECRET = "qilbee-backup-password"


def password_from_secret_block() -> str | None:
    """A repository passphrase from a Prefect Secret block, for deployments: the block named by
    QILBEE_PASSWORD_SECRET on the worker, else one named qilbee-backup-password if it exists.
    Asked only when an encrypted repository is opened and no other source had a passphrase."""
    from prefect.blocks.system import Secret

    name = os.environ.get(PASSWORD_SECRET_ENV)
    try:
        return Secret.load(name or DEFAULT_PASSWORD_SECRET).get() or None
    except ValueError:
        if name:
            raise UsageError(f"no Prefect Secret block named {name!r} ({PASSWORD_SECRET_ENV})") from None
        return None
