"""One test suite for every destination (restic's backend tests): a directory in tmp_path and
an S3 bucket on moto's server. Then what only one kind of store has."""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from qilbee_backup.destinations import Destination, FileDestination, S3Destination, open_destination
from qilbee_backup.errors import DestinationError, IntegrityError, NotFound, UsageError
from tests.plugins.s3 import free_port

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
# Small transfer settings so a 12 MiB file goes multipart (3 parts) and listing pages.
TRANSFER = {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB, "max_concurrency": 4, "list_page_size": 50}


@pytest.fixture(params=["file", "s3", "s3-object-lock"])
def dest(request, tmp_path) -> Destination:
    if request.param == "file":
        url = (tmp_path / "repo").as_uri()  # file:///…; FileDestination ignores the S3 options
    elif request.param == "s3-object-lock":
        # A lock-enabled bucket is versioned: removing must still make objects (and their space) go.
        url = f"s3://{request.getfixturevalue('s3_bucket_factory')(object_lock=True)}/repo"
    else:
        url = request.getfixturevalue("s3_repo_url")
    destination = open_destination(url, **TRANSFER)
    yield destination
    destination.close()


def write_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def leftovers(destination: Destination) -> list[str]:
    """Anything a failed write may have left behind: temp files, open multipart uploads."""
    if isinstance(destination, FileDestination):
        if not destination.root.exists():
            return []
        return [str(p.relative_to(destination.root)) for p in destination.root.rglob("*") if p.is_file()]
    uploads = destination._client.list_multipart_uploads(Bucket=destination.bucket).get("Uploads", [])
    objects = destination._client.list_objects_v2(Bucket=destination.bucket).get("Contents", [])
    return [u["Key"] for u in uploads] + [o["Key"] for o in objects]


# -- the shared suite ------------------------------------------------------------------


def test_bytes_round_trip_and_overwrite(dest):
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    assert dest.put_bytes("backups/one.json", b'{"id": 1}') is True
    assert dest.get_bytes("backups/one.json") == b'{"id": 1}'

    info = dest.stat("backups/one.json")
    assert info.key == "backups/one.json" and info.size == 9
    assert info.modified.tzinfo is not None and info.modified.utcoffset() == timedelta(0)
    assert before <= info.modified <= datetime.now(timezone.utc) + timedelta(seconds=5)

    assert dest.put_bytes("backups/one.json", b"replaced") is True
    assert dest.get_bytes("backups/one.json") == b"replaced"
    assert dest.put_bytes("empty", b"") is True
    assert dest.get_bytes("empty") == b"" and dest.stat("empty").size == 0


@pytest.mark.parametrize("size", [0, 100_003, 12 * MiB + 3], ids=["empty", "small", "multipart"])
def test_file_round_trip(dest, tmp_path, size):
    source = tmp_path / "source.bin"
    digest = write_file(source, size)
    dest.put_file(f"blobs/{digest[:2]}/{digest}", source, sha256=digest)
    assert dest.stat(f"blobs/{digest[:2]}/{digest}").size == size

    target = tmp_path / "restored" / "deep" / "copy.bin"  # parents are created
    dest.get_file(f"blobs/{digest[:2]}/{digest}", target)
    assert target.stat().st_size == size and sha256_of(target) == digest
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.bin"]  # no temp left beside it

    dest.put_file("blobs/no-checksum-given", source)  # sha256 is optional
    assert hashlib.sha256(dest.get_bytes("blobs/no-checksum-given")).hexdigest() == digest


def test_streaming_read(dest):
    data = os.urandom(3 * MiB + 17)
    dest.put_bytes("stream/obj", data)
    with dest.open_read("stream/obj") as reader:
        assert reader.read(10) == data[:10]
        pieces = [data[:10]]
        while chunk := reader.read(256 * 1024):
            assert len(chunk) <= 256 * 1024
            pieces.append(chunk)
    assert b"".join(pieces) == data


def test_missing_objects(dest, tmp_path):
    assert dest.stat("backups/nope.json") is None
    with pytest.raises(NotFound):
        dest.get_bytes("backups/nope.json")
    with pytest.raises(NotFound):
        dest.open_read("backups/nope.json")
    with pytest.raises(NotFound):
        dest.get_file("backups/nope.json", tmp_path / "out" / "nope.json")
    assert not (tmp_path / "out" / "nope.json").exists()
    assert list(dest.list("backups/")) == []


def test_list_by_prefix(dest):
    keys = [f"blobs/{i % 7:02x}/{i:06d}" for i in range(120)]
    keys += ["backups/2024.json", "backups/2025.json", "blobsy", "locks/a", "blobs-x/1"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: dest.put_bytes(k, k.encode()), keys))

    everything = list(dest.list())
    assert [o.key for o in everything] == sorted(keys)  # one order for every store: S3's
    assert all(o.size == len(o.key) for o in everything)

    assert [o.key for o in dest.list("blobs/")] == sorted(k for k in keys if k.startswith("blobs/"))
    assert [o.key for o in dest.list("blobs/03/")] == sorted(k for k in keys if k.startswith("blobs/03/"))
    assert [o.key for o in dest.list("blobs")] == sorted(k for k in keys if k.startswith("blobs"))
    assert [o.key for o in dest.list("backups/2025")] == ["backups/2025.json"]
    assert list(dest.list("nothing/")) == []


def test_remove_is_idempotent(dest):
    dest.put_bytes("locks/run-1", b"x")
    dest.remove("locks/run-1")
    assert dest.stat("locks/run-1") is None
    dest.remove("locks/run-1")  # already gone: not an error
    dest.remove("never/existed")


def test_put_if_absent(dest):
    assert dest.put_bytes("locks/source-a", b"first", if_absent=True) is True
    assert dest.put_bytes("locks/source-a", b"second", if_absent=True) is False
    assert dest.get_bytes("locks/source-a") == b"first"


@pytest.mark.parametrize("round_", range(3))
def test_put_if_absent_race_has_one_winner(dest, round_):
    writers = 8
    start = threading.Barrier(writers)

    def attempt(i: int) -> bool:
        start.wait()
        return dest.put_bytes("locks/contended", f"writer-{i}".encode(), if_absent=True)

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(attempt, range(writers)))
    assert results.count(True) == 1
    assert dest.get_bytes("locks/contended") == f"writer-{results.index(True)}".encode()


def test_missing_source_leaves_nothing(dest, tmp_path):
    with pytest.raises(FileNotFoundError):
        dest.put_file("blobs/gone", tmp_path / "vanished.bin")
    assert dest.stat("blobs/gone") is None
    assert leftovers(dest) == []


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB], ids=["single-part", "multipart"])
def test_source_failing_midway_leaves_nothing(dest, tmp_path, monkeypatch, size):
    """The local disk fails under the upload (the one faked boundary): no object, no debris."""
    source = tmp_path / "failing.bin"
    digest = write_file(source, size)
    fail_after = size - MiB  # somewhere in the last part
    real_open = builtins.open

    class FailingFile:
        def __init__(self, file):
            self._file = file

        def read(self, size=-1):
            data = self._file.read(size)
            if self._file.tell() > fail_after:
                raise OSError(5, "Input/output error")
            return data

        def __getattr__(self, name):
            return getattr(self._file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

    def open_failing(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        return FailingFile(opened) if str(file) == str(source) else opened

    monkeypatch.setattr(builtins, "open", open_failing)
    with pytest.raises(OSError, match="Input/output error"):
        dest.put_file("blobs/half", source)
    with pytest.raises(OSError, match="Input/output error"):
        dest.put_file("blobs/half", source, sha256=digest)  # S3: the body is read while sending
    monkeypatch.undo()
    assert dest.stat("blobs/half") is None
    assert leftovers(dest) == []


@pytest.mark.parametrize("key", ["../escape", "/abs", "a\\b", "", "a//b", "a/./b", "a/..", "x/.y.1234.qbtmp"])
def test_bad_keys_are_refused(dest, key):
    with pytest.raises(UsageError, match="key"):
        dest.put_bytes(key, b"x")
    with pytest.raises(UsageError):
        dest.stat(key)
    with pytest.raises(UsageError):
        dest.get_bytes(key)
    with pytest.raises(UsageError):
        dest.remove(key)


def test_bad_prefixes_are_refused(dest):
    for prefix in ("../", "/abs", "a/../b/"):
        with pytest.raises(UsageError):
            list(dest.list(prefix))


# -- file only -------------------------------------------------------------------------


def test_file_wrong_checksum_is_refused_and_leaves_nothing(tmp_path):
    dest = open_destination(str(tmp_path / "repo"))
    source = tmp_path / "blob"
    write_file(source, 1000)
    with pytest.raises(IntegrityError):
        dest.put_file("blobs/x", source, sha256="0" * 64)
    assert dest.stat("blobs/x") is None and leftovers(dest) == []


def test_file_list_skips_temporary_files(tmp_path):
    dest = open_destination(str(tmp_path / "repo"))
    dest.put_bytes("blobs/aa/real", b"1")
    (tmp_path / "repo" / "blobs" / "aa" / ".real.k2j3h4.qbtmp").write_bytes(b"crashed writer")
    assert [o.key for o in dest.list()] == ["blobs/aa/real"]


def test_file_destination_on_a_file_is_a_destination_error(tmp_path):
    (tmp_path / "not-a-dir").write_text("x")
    dest = open_destination(str(tmp_path / "not-a-dir"))
    with pytest.raises(DestinationError, match="not-a-dir") as caught:
        dest.put_bytes("k", b"x")
    assert "\n" not in str(caught.value)


# -- S3 only ---------------------------------------------------------------------------


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_s3_objects_live_under_the_prefix(s3_bucket, s3_client):
    dest = open_destination(f"s3://{s3_bucket}/team/repo")
    s3_client.put_object(Bucket=s3_bucket, Key="team/repository-other/x", Body=b"not ours")
    s3_client.put_object(Bucket=s3_bucket, Key="team/repo/blobs/", Body=b"")  # a console's "folder"
    dest.put_bytes("backups/a.json", b"{}")
    assert s3_client.get_object(Bucket=s3_bucket, Key="team/repo/backups/a.json")["Body"].read() == b"{}"
    assert [o.key for o in dest.list()] == ["backups/a.json"]


@pytest.mark.parametrize(
    "options",
    [
        {"storage_class": "STANDARD_IA", "sse": "AES256"},
        {"storage_class": "GLACIER_IR", "sse": "aws:kms", "sse_kms_key_id": "alias/qilbee-backups"},
    ],
    ids=["ia-aes256", "glacier-ir-kms"],
)
def test_s3_storage_class_and_encryption_on_every_put(s3_repo_url, s3_client, tmp_path, options):
    dest = open_destination(s3_repo_url, **options, **TRANSFER)
    small, big = tmp_path / "small", tmp_path / "big"
    write_file(small, 1000)
    write_file(big, 11 * MiB)
    dest.put_bytes("a", b"bytes")
    dest.put_bytes("b", b"only-once", if_absent=True)
    dest.put_file("c", small)
    dest.put_file("d", big)  # multipart
    for key in "abcd":
        head = s3_client.head_object(Bucket=dest.bucket, Key=f"repo/{key}")
        assert head["StorageClass"] == options["storage_class"], key
        assert head["ServerSideEncryption"] == options["sse"], key
        assert head.get("SSEKMSKeyId") == options.get("sse_kms_key_id"), key


def test_s3_sha256_checksums_are_stored(s3_repo_url, s3_client, tmp_path):
    dest = open_destination(s3_repo_url, **TRANSFER)
    small, big = tmp_path / "small", tmp_path / "big"
    write_file(small, 70_000)
    write_file(big, 12 * MiB)

    def stored(key: str) -> str:
        head = s3_client.head_object(Bucket=dest.bucket, Key=f"repo/{key}", ChecksumMode="ENABLED")
        return head["ChecksumSHA256"]

    dest.put_bytes("bytes", b"manifest")
    assert stored("bytes") == b64_sha256(b"manifest")
    dest.put_file("given", small, sha256=sha256_of(small))
    assert stored("given") == b64_sha256(small.read_bytes())
    dest.put_file("computed", small)
    assert stored("computed") == b64_sha256(small.read_bytes())

    # Multipart: S3 keeps a checksum of the parts' checksums (real S3 appends "-<parts>";
    # moto does not), each part being checked on arrival.
    dest.put_file("multipart", big)
    data = big.read_bytes()
    parts = [hashlib.sha256(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)]
    assert stored("multipart").split("-")[0] == base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()


def test_s3_wrong_checksum_is_caught(s3_repo_url, s3_client, tmp_path):
    """Real S3 refuses a PUT whose x-amz-checksum-sha256 does not match (BadDigest). moto
    stores it unchecked, which shows we send the caller's digest, and the check on read."""
    dest = open_destination(s3_repo_url)
    source = tmp_path / "blob"
    write_file(source, 5000)
    wrong = hashlib.sha256(b"something else").hexdigest()
    dest.put_file("blobs/bad", source, sha256=wrong)
    head = s3_client.head_object(Bucket=dest.bucket, Key="repo/blobs/bad", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(wrong)).decode()
    with pytest.raises(IntegrityError, match="blobs/bad"):
        dest.get_bytes("blobs/bad")
    with pytest.raises(IntegrityError, match="blobs/bad"):
        dest.get_file("blobs/bad", tmp_path / "out" / "bad")
    assert list((tmp_path / "out").iterdir()) == []  # no partial download left


def test_s3_missing_bucket_is_one_line_without_secrets(moto_server, monkeypatch, tmp_path):
    secret = "Sentinel/Secret+Key-9f8e7d6c5b4a"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASENTINELKEYID000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    dest = open_destination("s3://qb-no-such-bucket-here/repo", **TRANSFER)
    small, big = tmp_path / "small", tmp_path / "big"
    write_file(small, 10)
    write_file(big, 6 * MiB)
    calls = [
        lambda: dest.put_bytes("k", b"x"),
        lambda: dest.put_bytes("k", b"x", if_absent=True),
        lambda: dest.put_file("k", small),
        lambda: dest.put_file("k", big),  # multipart
        lambda: dest.get_bytes("k"),
        lambda: dest.get_file("k", tmp_path / "out"),
        lambda: dest.stat("k"),
        lambda: list(dest.list()),
        lambda: dest.remove("k"),
    ]
    for call in calls:
        with pytest.raises(DestinationError) as caught:
            call()
        message = str(caught.value)
        assert "qb-no-such-bucket-here" in message and "NoSuchBucket" in message
        assert "\n" not in message
        for text in (message, repr(caught.value), repr(dest)):
            assert secret not in text and "AKIASENTINELKEYID000" not in text


def test_s3_unreachable_endpoint_fails_after_bounded_retries(moto_server):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    dest = open_destination("s3://some-bucket/repo", endpoint_url=closed, max_attempts=3, connect_timeout=1)
    attempts = []
    dest._client.meta.events.register("before-send.s3", lambda **kwargs: attempts.append(1))
    started = time.monotonic()
    with pytest.raises(DestinationError) as caught:
        dest.put_bytes("k", b"x")
    assert time.monotonic() - started < 20
    assert len(attempts) == 3  # retried, then gave up
    message = str(caught.value)
    assert "cannot reach S3 endpoint" in message and "s3://some-bucket/repo/k" in message and "\n" not in message


def test_s3_destination_is_shared_across_threads(s3_repo_url):
    dest = open_destination(s3_repo_url)
    assert isinstance(dest, S3Destination)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: dest.put_bytes(f"t/{i:03d}", bytes([i])), range(40)))
        got = list(pool.map(lambda i: dest.get_bytes(f"t/{i:03d}"), range(40)))
    assert got == [bytes([i]) for i in range(40)]
