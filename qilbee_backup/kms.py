"""The master key wrapped by AWS KMS instead of a passphrase (a key file of kind "aws-kms").

Whoever may call kms:Decrypt on the KMS key (a worker's IAM role) opens the repository without any
passphrase on the machine; revoking that permission, or disabling the KMS key, closes it. The
repository's id is the encryption context, so the wrapped key opens this repository only (KMS
refuses it with another context), and every Decrypt is in CloudTrail with that id.

KMS never sees the data: only the 64-byte master key goes through Encrypt once, at `init` or `key
add`, and through Decrypt once per command. A repository may hold KMS keys and passphrase keys
side by side (a passphrase kept offline for the day KMS is unreachable is the safe setup).
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from typing import Any

from .crypto import KEY_FORMAT, MASTER_BYTES, b64, unb64
from .errors import QilbeeBackupError

KDF = "aws-kms"
CONTEXT_KEY = "qilbee-backup-repository"


class KmsRefused(QilbeeBackupError):
    """KMS would not wrap or unwrap the master key (no permission, key disabled or missing, no credentials)."""


def _client():
    import boto3
    from botocore.config import Config

    # The standard resolution: credentials, region and endpoint (AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL)
    # from the environment or the instance's role, as the AWS CLI finds them. KMS out of reach is said
    # in seconds, not after botocore's default minute-long connect timeout.
    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=20)
    return boto3.session.Session().client("kms", config=config)


def _refusal(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def wrap(master: bytes, kms_key_id: str, repo_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """A key file's content: the master key encrypted by the KMS key, bound to the repository's id."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        wrapped = _client().encrypt(KeyId=kms_key_id, Plaintext=master,
                                    EncryptionContext={CONTEXT_KEY: repo_id})["CiphertextBlob"]
    except (BotoCoreError, ClientError) as exc:
        raise KmsRefused(f"KMS would not encrypt with {kms_key_id} ({_refusal(exc)}); nothing changed") from None
    return {
        "format": KEY_FORMAT, "version": 1, "kdf": KDF, "kms_key_id": kms_key_id, "wrapped": b64(wrapped),
        "created_at": (now or datetime.now(timezone.utc)).isoformat(), "host": socket.gethostname(),
    }


def is_kms(keyfile: dict[str, Any]) -> bool:
    return keyfile.get("format") == KEY_FORMAT and keyfile.get("kdf") == KDF


def unwrap(keyfiles: dict[str, dict[str, Any]], repo_id: str) -> tuple[str, bytes] | str:
    """(key id, master key) from the first KMS key file KMS decrypts; else why none did."""
    from botocore.exceptions import BotoCoreError, ClientError

    why = "no KMS key"
    client = None
    for key_id, keyfile in sorted(keyfiles.items()):
        try:
            client = client or _client()
            master = client.decrypt(CiphertextBlob=unb64(keyfile["wrapped"]), KeyId=keyfile["kms_key_id"],
                                    EncryptionContext={CONTEXT_KEY: repo_id})["Plaintext"]
        except (BotoCoreError, ClientError) as exc:
            why = f"key {key_id}, KMS key {keyfile.get('kms_key_id')}: {_refusal(exc)}"
            continue
        except (KeyError, ValueError, TypeError):
            why = f"key {key_id}: not a KMS key file"
            continue
        if len(master) == MASTER_BYTES:
            return key_id, master
        why = f"key {key_id}: KMS returned no master key"
    return why
