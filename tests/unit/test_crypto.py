"""The encryption layer on its own: sealed objects, key files, keyed ids (qilbee_backup/crypto.py)."""

from __future__ import annotations

import io
import os

import pytest

from qilbee_backup.crypto import (
    FRAME,
    HEADER_BYTES,
    TAG_BYTES,
    Passwords,
    RepoKey,
    new_master_key,
    read_password_file,
    sealed_size,
    unwrap_master_key,
    wrap_master_key,
)
from qilbee_backup.errors import IntegrityError, UsageError

FAST_KDF = {"n": 2**10, "r": 8, "p": 1}  # the format records the parameters; the tests need no memory-hardness


@pytest.fixture(scope="module")
def key() -> RepoKey:
    return RepoKey(new_master_key(), "k1")


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME, 3 * FRAME + 17])
def test_a_sealed_object_opens_to_its_bytes_and_has_the_size_sealed_size_says(key, size):
    data = os.urandom(size)
    sealed = key.seal(data, "blob:x")
    assert len(sealed) == sealed_size(size) == HEADER_BYTES + size + (size // FRAME + 1) * TAG_BYTES
    assert key.open(sealed, "blob:x") == data
    # Nothing of the plaintext shows (below 16 bytes, random ciphertext contains it by chance: 1 byte in ~13% of runs).
    assert size < 16 or data[:64] not in sealed


def test_streaming_in_odd_pieces_gives_an_object_that_opens_the_same(key):
    data = os.urandom(2 * FRAME + 12345)
    out = io.BytesIO()
    with key.writer(out, "archive:a") as writer:
        for i in range(0, len(data), 77777):
            writer.write(data[i:i + 77777])
    reader = key.reader(io.BytesIO(out.getvalue()), "archive:a")
    got = b"".join(iter(lambda: reader.read(4093), b""))
    assert got == data and writer.size == len(out.getvalue()) == sealed_size(len(data))


def test_two_seals_of_the_same_bytes_differ(key):
    assert key.seal(b"same", "blob:x") != key.seal(b"same", "blob:x")


@pytest.mark.parametrize("size", [10, FRAME + 10, 2 * FRAME])
def test_any_flipped_bit_is_caught(key, size):
    sealed = bytearray(key.seal(os.urandom(size), "blob:x"))
    for position in (0, 5, HEADER_BYTES, HEADER_BYTES + 3, len(sealed) // 2, len(sealed) - 1):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(IntegrityError):
            key.open(bytes(damaged), "blob:x")


def test_truncation_at_a_frame_boundary_extra_bytes_and_a_dropped_frame_are_caught(key):
    sealed = key.seal(os.urandom(2 * FRAME + 5), "blob:x")
    frame = FRAME + TAG_BYTES
    with pytest.raises(IntegrityError, match="frame"):
        key.open(sealed[:HEADER_BYTES + frame], "blob:x")  # the rest cut off after a whole frame
    with pytest.raises(IntegrityError, match="frame 2 fails authentication"):  # joined to the last frame
        key.open(sealed + b"\x00", "blob:x")
    dropped = sealed[:HEADER_BYTES] + sealed[HEADER_BYTES + frame:]  # the first frame removed
    with pytest.raises(IntegrityError):
        key.open(dropped, "blob:x")


def test_an_object_under_another_name_or_key_does_not_open(key):
    sealed = key.seal(b"manifest bytes", "manifest:20261130T020000Z-000001")
    with pytest.raises(IntegrityError):
        key.open(sealed, "manifest:20261130T020000Z-000002")
    with pytest.raises(IntegrityError):
        RepoKey(new_master_key()).open(sealed, "manifest:20261130T020000Z-000001")
    with pytest.raises(IntegrityError, match="bad header"):
        key.open(b"plain text, not sealed", "blob:x")


def test_blob_ids_are_keyed_stable_and_reveal_nothing(key):
    sha = "ab" * 32
    assert key.blob_id(sha) == key.blob_id(sha) != sha
    assert RepoKey(new_master_key()).blob_id(sha) != key.blob_id(sha)
    assert len(key.blob_id(sha)) == 64 and int(key.blob_id(sha), 16) >= 0


def test_a_key_file_opens_with_its_passphrase_and_repository_only():
    master = new_master_key()
    key_file = wrap_master_key(master, "pass one", "repo-a", kdf=FAST_KDF)
    assert unwrap_master_key(key_file, "pass one", "repo-a") == master
    assert unwrap_master_key(key_file, "pass two", "repo-a") is None
    assert unwrap_master_key(key_file, "pass one", "repo-b") is None  # copied into another repository
    assert key_file["n"] == FAST_KDF["n"] and key_file["kdf"] == "scrypt"
    assert master.hex() not in str(key_file) and "pass one" not in str(key_file)
    broken = {**key_file, "wrapped": key_file["wrapped"][:-4] + "AAA="}
    assert unwrap_master_key(broken, "pass one", "repo-a") is None


def test_a_repo_key_never_shows_its_bytes(key):
    assert key.master.hex() not in repr(key) and "k1" in repr(key)


def test_password_sources_environment_file_and_added(tmp_path, monkeypatch):
    sources = Passwords("QILBEE_TEST_PW")
    monkeypatch.delenv("QILBEE_TEST_PW", raising=False)
    monkeypatch.delenv("QILBEE_TEST_PW_FILE", raising=False)
    assert sources.find() is None
    (tmp_path / "pw").write_text("from the file\nsecond line ignored\n")
    monkeypatch.setenv("QILBEE_TEST_PW_FILE", str(tmp_path / "pw"))
    assert sources.find() == "from the file"
    monkeypatch.setenv("QILBEE_TEST_PW", "from the variable")
    assert sources.find() == "from the variable"
    sources.add(lambda: "from the flag")
    assert sources.find() == "from the flag"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        read_password_file(str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="cannot read"):
        read_password_file(str(tmp_path / "missing"))
