"""A repository's encryption keys (restic's `init` and `key`): make an encrypted repository, list,
add, remove and change the passphrases that open it. Run directly by the CLI, never as flow runs:
the passphrases come from the operator's terminal, files or environment, and stay in this process.

Changing or revoking a passphrase re-wraps the master key and never re-encrypts data: a key file
is a few hundred bytes; the backups are untouched.
"""

from __future__ import annotations

from flows.parameters import KeyId, KmsKeyId, RepoUrl
from flows.runbook import runbook
from qilbee_backup import kms
from qilbee_backup.crypto import NEW_PASSWORDS, KeyRequired, find_password
from qilbee_backup.errors import QilbeeBackupError, UsageError
from qilbee_backup.inspection import encryption_of
from qilbee_backup.repository import Repository, open_repository
from tasks.steps import get_logger


def _new_password() -> str:
    password = NEW_PASSWORDS.find()
    if not password:
        raise KeyRequired("give the new passphrase: QILBEE_NEW_PASSWORD, QILBEE_NEW_PASSWORD_FILE or --new-password-file")
    return password


@runbook
def init(repo: RepoUrl, insecure_no_encryption: bool = False, kms_key_id: KmsKeyId | None = None) -> dict:
    """Make a new repository: encrypted under the passphrase given (QILBEE_PASSWORD, --password-file, or
    asked on a terminal) or under an AWS KMS key, or unencrypted with insecure_no_encryption. A first
    backup to an empty location does the same itself (with a passphrase).

    Args:
        repo: Where: a path, file:///path or s3://bucket/prefix; it must not hold a repository yet.
        insecure_no_encryption: Store backups readable by whoever can read the location.
        kms_key_id: Wrap the master key with this AWS KMS key instead of a passphrase: whoever may call
            kms:Decrypt on it opens the repository (add a passphrase too with key add, for the day KMS is unreachable).
    """
    if insecure_no_encryption and kms_key_id:
        raise UsageError("--kms-key-id: an unencrypted repository has no key to wrap")
    repository = open_repository(repo, must_exist=False)
    try:
        if repository.exists():
            raise QilbeeBackupError(f"{repo} is already a repository ({encryption_of(repository.config())}); nothing changed")
        passphrase = None if insecure_no_encryption or kms_key_id else find_password()
        if not insecure_no_encryption and not kms_key_id and not passphrase:
            raise KeyRequired("a new repository is encrypted: give a passphrase (QILBEE_PASSWORD, QILBEE_PASSWORD_FILE "
                              "or --password-file), or --kms-key-id, or --insecure-no-encryption")
        config = repository.init(passphrase=passphrase, kms_key_id=kms_key_id)
        get_logger().info("created %s repository %s", encryption_of(config), repo)
        return {"repo": repo, "encryption": encryption_of(config), "key_id": repository.key.key_id if repository.key else None}
    finally:
        repository.close()


def _keys_of(repository: Repository) -> list[dict]:
    return [{"key_id": key_id, "added_at": info.get("created_at"), "host": info.get("host"),
             "kdf": (f"{info.get('kdf')} {info.get('kms_key_id')}" if kms.is_kms(info) else
                     f"{info.get('kdf')} N={info.get('n')} r={info.get('r')} p={info.get('p')}"),
             "current": key_id == repository.key.key_id}
            for key_id, info in sorted(repository.key_files().items(), key=lambda kv: str(kv[1].get("created_at")))]


def _encrypted(repo: str) -> Repository:
    repository = open_repository(repo)
    if repository.key is None:
        repository.close()
        raise UsageError(f"{repo} is not encrypted: it has no keys")
    return repository


@runbook
def key_list(repo: RepoUrl) -> dict:
    """The passphrases (key files) that open the repository; `current` is the one given now.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
    """
    repository = _encrypted(repo)
    try:
        return {"repo": repo, "keys": _keys_of(repository)}
    finally:
        repository.close()


@runbook
def key_add(repo: RepoUrl, kms_key_id: KmsKeyId | None = None) -> dict:
    """Let one more passphrase open the repository (the new one from QILBEE_NEW_PASSWORD,
    --new-password-file or a prompt), or an AWS KMS key; the current key must open it.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        kms_key_id: Add this AWS KMS key instead of a passphrase.
    """
    repository = _encrypted(repo)
    try:
        key_id = repository.add_kms_key(kms_key_id) if kms_key_id else repository.add_key(_new_password())
        get_logger().info("%s: added key %s", repo, key_id)
        return {"repo": repo, "added": key_id, "keys": _keys_of(repository)}
    finally:
        repository.close()


@runbook
def key_remove(repo: RepoUrl, key_id: KeyId) -> dict:
    """Revoke a passphrase: remove its key file. The last key cannot be removed.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
        key_id: The key to remove, as key list shows it.
    """
    repository = _encrypted(repo)
    try:
        repository.remove_key(key_id)
        get_logger().info("%s: removed key %s", repo, key_id)
        return {"repo": repo, "removed": key_id, "keys": _keys_of(repository)}
    finally:
        repository.close()


@runbook
def key_passwd(repo: RepoUrl) -> dict:
    """Change the passphrase that opened the repository: its key is replaced by one under the new
    passphrase (QILBEE_NEW_PASSWORD, --new-password-file or a prompt). The data is not touched.

    Args:
        repo: The repository: a path, file:///path or s3://bucket/prefix.
    """
    repository = _encrypted(repo)
    try:
        old = repository.key.key_id
        new = repository.change_passphrase(_new_password())
        get_logger().info("%s: key %s replaced by %s", repo, old, new)
        return {"repo": repo, "removed": old, "added": new, "keys": _keys_of(repository)}
    finally:
        repository.close()
