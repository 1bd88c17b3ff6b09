"""Typed errors. Every message is one line that says what happened, and never holds a secret."""


class QilbeeBackupError(Exception):
    """Base of every error the tool reports to a person. Exit code 1 unless stated."""

    exit_code = 1


class UsageError(QilbeeBackupError):
    """Bad input from the operator: unknown repository scheme, malformed id, bad flag value."""

    exit_code = 2


class NotFound(QilbeeBackupError):
    """A backup, blob or object that should exist does not."""


class LockedError(QilbeeBackupError):
    """Another run holds the repository lock for this source."""


class IntegrityError(QilbeeBackupError):
    """Data does not match its recorded checksum, size or figures."""


class DestinationError(QilbeeBackupError):
    """A storage destination failed permanently (after retries for transient faults)."""


class ObjectLocked(QilbeeBackupError):
    """An object is under S3 Object Lock (a retention period or legal hold) and cannot be removed yet."""


class FailedWithReport(QilbeeBackupError):
    """A run that finished its work and found it failed (damage found, a check not passed): the
    run is red, and `result` holds the report it published, for the CLI to print before the error."""

    def __init__(self, message: str, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result
