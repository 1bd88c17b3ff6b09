"""Client-side encryption of a repository: what the bucket holds is unreadable without a passphrase.

The model is restic's and Kopia's:

- A random **master key** (64 bytes: a 32-byte data key, a 32-byte id key) is made once per
  repository. It is stored only wrapped, once per passphrase, as ``keys/<key id>.json``: the
  passphrase goes through scrypt (memory-hard; its parameters are recorded in the key file) to a
  key-encryption key that seals the master key with AES-256-GCM, the repository's id bound as
  associated data (a key file copied into another repository does not open it). Changing or
  revoking a passphrase rewrites a key file, never the data.
- **Objects** (blobs, manifests, archive records, archives) are sealed with AES-256-GCM in frames of
  1 MiB (the "STREAM" construction of age and Tink): each object has a random 16-byte salt from
  which HKDF derives its own key, each frame's nonce is its index and a last-frame flag, and the
  object's logical name (``blob:<id>``, ``manifest:<backup id>``, ...) is the last frame's
  associated data. So every frame is authenticated before it is used, frames cannot be reordered,
  dropped or truncated, and one object's bytes put under another's name fail to open (at its last
  frame: readers act on an object only once it has been read to its end, as the restorer, verify
  and the manifest reader do). The name closes the object rather than opening it so that a blob
  can be sealed in the same pass that hashes and compresses it, before its name (the keyed id of
  its content's hash) is known.
- **Content ids are keyed**: a blob is named HMAC-SHA-256(id key, SHA-256 of its content), so a
  name says nothing about the content (nobody can test whether a known file is in the bucket), and
  equal contents still get equal names, so deduplication works across backups.

The layout of a sealed object, for decrypting by hand (scripts/decrypt_object.py does it with only
the passphrase and the ``cryptography`` package)::

    b"QBE1" | salt (16) | frame 0 | frame 1 | ... | last frame
    frame i = AES-256-GCM(key, nonce = i as 11 bytes big-endian | 0x01 if last else 0x00,
                          plaintext up to 1 MiB, aad = name on the last frame, empty before it)
            = ciphertext | tag (16)
    key     = HKDF-SHA-256(data key, salt, info = b"qilbee-backup object\\0")

Every frame but the last holds exactly 1 MiB of plaintext; the last holds the rest (possibly none).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import IntegrityError, QilbeeBackupError, UsageError

MAGIC = b"QBE1"
SALT_BYTES = 16
TAG_BYTES = 16
FRAME = 1024 * 1024  # plaintext bytes per frame
HEADER_BYTES = len(MAGIC) + SALT_BYTES
MASTER_BYTES = 64
CIPHER = "AES-256-GCM"
ID_MAC = "HMAC-SHA-256"
KDF = "scrypt"
# scrypt N=2^15, r=8: 32 MiB and ~0.1 s on this class of machine, once per command (restic's
# default is the same order); p=1. Recorded per key file, so they can grow without a format change.
DEFAULT_KDF = {"n": 2**15, "r": 8, "p": 1}
KEY_FORMAT = "qilbee-backup-key"
_OBJECT_INFO = b"qilbee-backup object\x00"
_WRAP_AAD = b"qilbee-backup master key\x00"


class WrongPassphrase(QilbeeBackupError):
    """No key file of the repository opens with the passphrase given."""


class KeyRequired(UsageError):
    """The repository is encrypted and no passphrase was given."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


# -- passphrases -------------------------------------------------------------------------------

PasswordSource = Callable[[], "str | None"]


def read_password_file(path: str) -> str:
    """The passphrase in a file: its first line, without the line break (restic's rule)."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read the password file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the password file {path} is not UTF-8 text") from None
    if not line:
        raise UsageError(f"the password file {path} is empty")
    return line


class Passwords:
    """Where passphrases come from, asked in order, first answer wins: the environment (a variable,
    or a file a variable names), then what the caller added (the CLI's --password-file and prompt,
    a Prefect Secret block on a worker). Asked only when an encrypted repository needs one."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        self._sources: list[PasswordSource] = [self._environment]
        self._interactive: list[PasswordSource] = []  # sources that ask someone (a prompt)

    def _environment(self) -> str | None:
        if os.environ.get(self.variable):
            return os.environ[self.variable]
        path = os.environ.get(f"{self.variable}_FILE")
        return read_password_file(path) if path else None

    def add(self, source: PasswordSource, *, first: bool = True, interactive: bool = False) -> None:
        if source not in self._sources:
            self._sources.insert(0 if first else len(self._sources), source)
        if interactive and source not in self._interactive:
            self._interactive.append(source)

    def remove(self, source: PasswordSource) -> None:
        if source in self._sources:
            self._sources.remove(source)
        if source in self._interactive:
            self._interactive.remove(source)

    def find(self, *, interactive: bool = True) -> str | None:
        """The first answer; interactive=False: without asking anyone (None where only a prompt would answer)."""
        for source in list(self._sources):
            if not interactive and source in self._interactive:
                continue
            password = source()
            if password:
                return password
        return None


PASSWORDS = Passwords("QILBEE_PASSWORD")  # a repository's passphrase
NEW_PASSWORDS = Passwords("QILBEE_NEW_PASSWORD")  # the passphrase key add / key passwd wrap the master key under


def add_password_source(source: PasswordSource, *, first: bool = True, interactive: bool = False) -> None:
    PASSWORDS.add(source, first=first, interactive=interactive)


def find_password(*, interactive: bool = True) -> str | None:
    return PASSWORDS.find(interactive=interactive)


# -- key files ---------------------------------------------------------------------------------


def _kek(passphrase: str, salt: bytes, params: dict[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(passphrase.encode("utf-8"))


def new_master_key() -> bytes:
    return secrets.token_bytes(MASTER_BYTES)


def new_key_id() -> str:
    return secrets.token_hex(8)


def wrap_master_key(master: bytes, passphrase: str, repo_id: str, *, kdf: dict[str, int] | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
    """A key file's content: the master key sealed under the passphrase (see the module's text)."""
    params = dict(kdf or DEFAULT_KDF)
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    wrapped = AESGCM(_kek(passphrase, salt, params)).encrypt(nonce, master, _WRAP_AAD + repo_id.encode())
    return {
        "format": KEY_FORMAT, "version": 1,
        "kdf": KDF, **params, "salt": b64(salt),
        "cipher": CIPHER, "nonce": b64(nonce), "wrapped": b64(wrapped),
        "created_at": (now or datetime.now(timezone.utc)).isoformat(),
        "host": socket.gethostname(),
    }


def unwrap_master_key(keyfile: dict[str, Any], passphrase: str, repo_id: str) -> bytes | None:
    """The master key, or None when this passphrase does not open this key file."""
    try:
        if keyfile.get("format") != KEY_FORMAT or keyfile.get("kdf") != KDF or keyfile.get("cipher") != CIPHER:
            return None
        params = {k: int(keyfile[k]) for k in ("n", "r", "p")}
        kek = _kek(passphrase, unb64(keyfile["salt"]), params)
        master = AESGCM(kek).decrypt(unb64(keyfile["nonce"]), unb64(keyfile["wrapped"]), _WRAP_AAD + repo_id.encode())
    except (InvalidTag, KeyError, ValueError, TypeError):
        return None
    return master if len(master) == MASTER_BYTES else None


# -- the unlocked key ----------------------------------------------------------------------------


class RepoKey:
    """A repository's master key, unlocked: seals and opens objects, names blobs."""

    def __init__(self, master: bytes, key_id: str | None = None) -> None:
        if len(master) != MASTER_BYTES:
            raise ValueError("a master key is 64 bytes")
        self._data_key, self._id_key = master[:32], master[32:]
        self.key_id = key_id  # the key file that opened it (None: made here)
        self._master = master

    def __repr__(self) -> str:  # never the key bytes
        return f"RepoKey(key_id={self.key_id!r})"

    @property
    def master(self) -> bytes:
        return self._master

    def blob_id(self, sha256_hex: str) -> str:
        return hmac.new(self._id_key, bytes.fromhex(sha256_hex), hashlib.sha256).hexdigest()

    def name_id(self, text: str) -> str:
        """A keyed name for something that would say too much in plain (a source's lock)."""
        return hmac.new(self._id_key, b"name\x00" + text.encode(), hashlib.sha256).hexdigest()[:32]

    def _aead(self, salt: bytes) -> AESGCM:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_OBJECT_INFO).derive(self._data_key)
        return AESGCM(key)

    def seal(self, data: bytes, name: str) -> bytes:
        out = io.BytesIO()
        with self.writer(out, name) as w:
            w.write(data)
        return out.getvalue()

    def open(self, data: bytes, name: str) -> bytes:
        reader = self.reader(io.BytesIO(data), name)
        parts = []
        while chunk := reader.read(FRAME):
            parts.append(chunk)
        return b"".join(parts)

    def writer(self, raw: BinaryIO, name: str | None = None) -> "SealingWriter":
        """A sealing writer into raw; name now, or at close(name) when it is known only at the end."""
        return SealingWriter(self, raw, name)

    def reader(self, raw: BinaryIO, name: str) -> "OpeningReader":
        return OpeningReader(self, raw, name)


def sealed_size(plain_size: int) -> int:
    """Bytes of a sealed object of plain_size bytes (frames are fixed-size, so this is exact)."""
    frames = plain_size // FRAME + 1  # a last frame always ends the object, empty or not
    return HEADER_BYTES + plain_size + frames * TAG_BYTES


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class SealingWriter:
    """A file-like writer that seals what passes into raw, frame by frame; close() (or the with
    block) writes the last frame, bound to the object's name, without which the object does not open.

    One plaintext frame and one sealed frame are allocated per writer and reused (a fresh 1 MiB
    buffer per frame costs more in page faults than AES-GCM costs in CPU); raw must therefore take
    each write before it returns, as files and hashing writers do."""

    def __init__(self, key: RepoKey, raw: BinaryIO, name: str | None = None) -> None:
        salt = secrets.token_bytes(SALT_BYTES)
        self._aead = key._aead(salt)
        self._name = name
        self._raw = raw
        self._frame = bytearray(FRAME)
        self._filled = 0  # plaintext bytes waiting in _frame
        self._sealed = bytearray(FRAME + TAG_BYTES)
        self._index = 0
        self._closed = False
        self.size = 0  # sealed bytes written
        self.plain_size = 0  # bytes given to write()
        self._emit(MAGIC + salt)

    def _emit(self, data) -> None:
        view = memoryview(data)
        size = len(view)
        while view:
            written = self._raw.write(view)
            view = view[size if written is None else written:]
        self.size += size

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        self.plain_size += size
        while view:
            if self._filled == FRAME:  # full, and more follows: not the last frame
                self._seal(memoryview(self._frame), last=False)
                self._filled = 0
            if self._filled == 0 and len(view) > FRAME:  # a whole frame, more behind it: sealed in place
                self._seal(view[:FRAME], last=False)
                view = view[FRAME:]
                continue
            take = min(FRAME - self._filled, len(view))
            self._frame[self._filled:self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
        return size

    def _seal(self, plain: memoryview, *, last: bool, aad: bytes = b"") -> None:
        out = memoryview(self._sealed)[:len(plain) + TAG_BYTES]
        self._aead.encrypt_into(_nonce(self._index, last), plain, aad, out)
        self._index += 1
        self._emit(out)

    def flush(self) -> None:
        pass

    def close(self, name: str | None = None) -> None:
        if self._closed:
            return
        name = name or self._name
        if not name:
            raise ValueError("a sealed object's last frame needs its name")
        self._closed = True
        if self._filled == FRAME:  # a full frame then an empty last one, as sealed_size counts
            self._seal(memoryview(self._frame), last=False)
            self._filled = 0
        self._seal(memoryview(self._frame)[:self._filled], last=True, aad=name.encode())
        self._filled = 0

    def __enter__(self) -> "SealingWriter":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()


class OpeningReader:
    """A file-like reader of the plaintext of a sealed object read from raw: every frame is
    authenticated before a byte of it is handed out. IntegrityError on any damage or truncation."""

    def __init__(self, key: RepoKey, raw: BinaryIO, name: str) -> None:
        self._raw = raw
        self._name = name
        self._aad = name.encode()
        header = self._read_exactly(HEADER_BYTES)
        if len(header) < HEADER_BYTES or header[:len(MAGIC)] != MAGIC:
            raise IntegrityError(f"{name}: not an encrypted object of this repository (bad header)")
        self._aead = key._aead(header[len(MAGIC):])
        self._index = 0
        self._pending = b""  # the current frame's plaintext, handed out from _offset on
        self._offset = 0
        self._done = False

    def _read_exactly(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self._raw.read(n - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _next_frame(self) -> None:
        frame = self._read_exactly(FRAME + TAG_BYTES)
        last = len(frame) < FRAME + TAG_BYTES
        if last and len(frame) < TAG_BYTES:
            raise IntegrityError(f"{self._name}: truncated (frame {self._index} is missing)")
        try:
            self._pending = self._aead.decrypt(_nonce(self._index, last), frame, self._aad if last else b"")
            self._offset = 0
        except InvalidTag:
            raise IntegrityError(f"{self._name}: frame {self._index} fails authentication "
                                 "(damaged, truncated, or not this object)") from None
        self._index += 1
        if last:
            self._done = True
            if self._raw.read(1):
                raise IntegrityError(f"{self._name}: bytes after the last frame")

    def read(self, n: int = -1) -> bytes:
        out = []
        want = n if n is not None and n >= 0 else None
        while want is None or want > 0:
            if self._offset >= len(self._pending):
                if self._done:
                    break
                self._next_frame()
                continue
            # Only the part handed out is copied (a whole frame not at all), never the rest of the frame.
            end = len(self._pending) if want is None else min(len(self._pending), self._offset + want)
            take = self._pending if self._offset == 0 and end == len(self._pending) else self._pending[self._offset:end]
            self._offset = end
            out.append(take)
            if want is not None:
                want -= len(take)
        return out[0] if len(out) == 1 else b"".join(out)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


@dataclass(frozen=True)
class Encryption:
    """What a repository's config says about its encryption (None in the config: unencrypted)."""

    cipher: str = CIPHER
    frame: int = FRAME
    ids: str = ID_MAC
    kdf: str = KDF

    def as_config(self) -> dict[str, Any]:
        return {"cipher": self.cipher, "frame": self.frame, "ids": self.ids, "kdf": self.kdf}

    @classmethod
    def from_config(cls, value: Any) -> "Encryption | None":
        if value is None:
            return None
        if not isinstance(value, dict):
            raise IntegrityError("the repository's encryption settings are not a mapping")
        found = cls(**{k: value.get(k) for k in ("cipher", "frame", "ids", "kdf")})
        if found != cls():
            raise IntegrityError(f"the repository is encrypted with {value}; this tool reads {cls().as_config()}")
        return found


class BlobSealer:
    """Seals blobs for one repository as they are compressed: the name (the keyed id of the
    content's SHA-256) is given at the end, once the content has been hashed in the same pass."""

    def __init__(self, key: RepoKey) -> None:
        self.key = key

    def writer(self, raw: BinaryIO) -> SealingWriter:
        return self.key.writer(raw)

    def name_for(self, sha256_hex: str) -> str:
        return f"blob:{self.key.blob_id(sha256_hex)}"
