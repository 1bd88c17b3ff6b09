"""Repository URLs, object keys and destination options: parsed or refused, with one-line messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qilbee_backup.destinations import FileDestination, S3Destination, S3Options, open_destination
from qilbee_backup.destinations.url import (
    FileLocation,
    S3Location,
    check_key,
    check_prefix,
    check_sha256_hex,
    parse_url,
    redact_url,
)
from qilbee_backup.destinations.base import ColdState
from qilbee_backup.errors import NotFound, UsageError


@pytest.mark.parametrize(
    "url, expected",
    [
        ("/srv/backups/repo", FileLocation(Path("/srv/backups/repo"))),
        ("relative/repo", FileLocation(Path("relative/repo"))),
        ("./repo", FileLocation(Path("repo"))),
        ("name:with-colon", FileLocation(Path("name:with-colon"))),
        ("file:///srv/backups/repo", FileLocation(Path("/srv/backups/repo"))),
        ("file:///srv/my%20backups", FileLocation(Path("/srv/my backups"))),
        ("file://localhost/srv/repo", FileLocation(Path("/srv/repo"))),
        ("FILE:///srv/repo", FileLocation(Path("/srv/repo"))),
        ("s3://bucket", S3Location("bucket", "")),
        ("s3://bucket/", S3Location("bucket", "")),
        ("s3://bucket/prefix", S3Location("bucket", "prefix")),
        ("s3://my.bucket-1/team/repo/", S3Location("my.bucket-1", "team/repo")),
    ],
)
def test_accepted_urls(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    "url, why",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3:bucket/prefix", "s3://bucket/prefix"),
        ("s3://ab/prefix", "not a valid bucket name"),
        ("s3://bad bucket/x", "not a valid bucket name"),
        ("s3://bucket:9000/x", "not a valid bucket name"),
        ("s3://bucket/a/../b", "bad prefix"),
        ("s3://bucket/a//b", "bad prefix"),
        ("s3://bucket/x?versionId=1", "no query"),
        ("file://relative/path", "absolute"),
        ("file:relative/path", "absolute"),
        ("file://", "absolute"),
        ("file:///srv/a#frag", "no query or fragment"),
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("http://example.invalid/repo", "unsupported scheme 'http'"),
        ("/srv/repo\nnext", "control characters"),
    ],
)
def test_refused_urls_are_one_line_usage_errors(url, why):
    with pytest.raises(UsageError, match=why) as caught:
        parse_url(url)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLEKEY:wJalrXUtnFEMI%2FSECRET@bucket/repo",
        "s3://AKIAEXAMPLEKEY@bucket/repo",
        "https://user:wJalrXUtnFEMI@storage.example/repo",
        "s3://bucket/repo?X-Amz-Signature=wJalrXUtnFEMI",
        "file://user:wJalrXUtnFEMI@host/srv",
    ],
)
def test_credentials_in_urls_never_reach_the_message(url):
    with pytest.raises(UsageError) as caught:
        open_destination(url)
    message = str(caught.value)
    assert "wJalrXUtnFEMI" not in message and "AKIAEXAMPLEKEY" not in message
    assert "***" in message


def test_redact_url_keeps_what_helps():
    assert redact_url("s3://k:s@bucket/p") == "s3://***@bucket/p"
    assert redact_url("s3://bucket/p?token=t") == "s3://bucket/p?***"
    assert redact_url("/plain/path") == "/plain/path"


@pytest.mark.parametrize("key", ["a", "blobs/ab/ab12", "backups/2024-01-01T00:00:00Z.json", "a/.hidden", "x.qbtmp"])
def test_good_keys(key):
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "/abs", "../up", "a/../b", "a/..", "a/./b", "a//b", "a/", "a\\b", "a\x00b", "d/.name.abc123.qbtmp"]
)
def test_bad_keys(key):
    with pytest.raises(UsageError):
        check_key(key)


@pytest.mark.parametrize("prefix", ["", "blobs", "blobs/", "blobs/a", "backups/2024-"])
def test_good_prefixes(prefix):
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/blobs", "../x", "a//", "a\\b/", "x/a\\b"])
def test_bad_prefixes(prefix):
    with pytest.raises(UsageError):
        check_prefix(prefix)


def test_sha256_hex():
    digest = "AB" * 32
    assert check_sha256_hex(digest) == "ab" * 32
    assert check_sha256_hex(None) is None
    for bad in ("ab" * 31, "zz" * 32, "ab" * 33):
        with pytest.raises(UsageError):
            check_sha256_hex(bad)


def test_open_destination_picks_the_class(tmp_path):
    local = open_destination(str(tmp_path / "repo"))
    assert isinstance(local, FileDestination) and local.root == tmp_path / "repo"
    assert local.url == str(tmp_path / "repo")

    as_uri = open_destination((tmp_path / "repo").as_uri())
    assert isinstance(as_uri, FileDestination) and as_uri.root == tmp_path / "repo"

    relative = open_destination("some/rel/repo")
    assert isinstance(relative, FileDestination) and relative.root == Path.cwd() / "some/rel/repo"

    # Making the S3 client contacts nobody: no endpoint is needed yet.
    remote = open_destination("s3://bucket/team/repo/", storage_class="STANDARD_IA", max_concurrency=16)
    assert isinstance(remote, S3Destination)
    assert (remote.bucket, remote.prefix, remote.url) == ("bucket", "team/repo", "s3://bucket/team/repo")
    assert remote.options.storage_class == "STANDARD_IA" and remote.options.max_concurrency == 16
    assert remote._client.meta.config.max_pool_connections >= 16
    assert repr(remote) == "S3Destination(url='s3://bucket/team/repo')"
    remote.close()


def test_storage_classes_are_a_capability_a_destination_declares(tmp_path):
    """Callers ask the interface (storage_classes, with_storage_class, object_state, start_retrieval),
    never an S3 client: there is none to reach for."""
    local = open_destination(str(tmp_path / "repo"))
    assert local.storage_classes is False and local.with_storage_class("DEEP_ARCHIVE") is local
    with pytest.raises(NotFound, match=r"/missing: no such object"):
        local.object_state("missing")
    local.put_bytes("k", b"12345")
    state = local.object_state("k")
    assert (state.key, state.size, state.storage_class, state.readable) == ("k", 5, "STANDARD", True)
    assert local.start_retrieval(state, days=1, tier="Bulk") is state

    remote = open_destination("s3://bucket/repo", storage_class="STANDARD_IA", endpoint_url="http://127.0.0.1:9")
    assert remote.storage_classes is True and not hasattr(remote, "client")
    assert remote.with_storage_class(None) is remote and remote.with_storage_class("STANDARD_IA") is remote
    cold = remote.with_storage_class("GLACIER")  # a destination of its own, which the caller closes
    assert isinstance(cold, S3Destination) and cold is not remote
    assert (cold.url, cold.options.storage_class, cold.options.endpoint_url) == (remote.url, "GLACIER", "http://127.0.0.1:9")
    readable = ColdState("k", 5, "GLACIER", needs_retrieval=True, restore="done")
    assert remote.start_retrieval(readable) is readable  # nothing asked of S3
    for dest in (cold, remote):
        dest.close()


def test_retrieval_orchestration_needs_no_boto3():
    """retrieval (imported by the restore runbook) and the archive store ask the destination's interface:
    neither loads the S3 destination, nor botocore."""
    code = ("import sys, qilbee_backup.retrieval, qilbee_backup.cold_archive.store; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore') "
            "or m == 'qilbee_backup.destinations.s3'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_file_destination_ignores_s3_options(tmp_path):
    dest = open_destination(str(tmp_path), storage_class="DEEP_ARCHIVE", sse="AES256", max_concurrency=2)
    assert isinstance(dest, FileDestination)


def test_unknown_option_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="lock_hours"):
        open_destination("s3://bucket/repo", lock_hours=24)
    with pytest.raises(UsageError, match="storage_clas"):
        open_destination(str(tmp_path), storage_clas="STANDARD_IA")


def test_s3_option_defaults():
    options = S3Options()
    assert (options.storage_class, options.sse, options.sse_kms_key_id) == (None, None, None)
    assert options.max_concurrency == 8
    assert options.multipart_threshold == 64 * 1024 * 1024
    assert options.max_attempts == 5


@pytest.mark.parametrize(
    "options, why",
    [
        ({"sse": "aws:kms:dsse"}, "sse must be"),
        ({"sse_kms_key_id": "alias/x"}, "needs sse='aws:kms'"),
        ({"sse": "AES256", "sse_kms_key_id": "alias/x"}, "needs sse='aws:kms'"),
        ({"storage_class": "standard_ia"}, "storage_class"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"multipart_threshold": 1024}, "multipart_threshold"),
        ({"multipart_chunksize": 6 * 1024**3}, "multipart_chunksize"),
        ({"max_attempts": True}, "max_attempts"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"list_page_size": 1001}, "list_page_size"),
    ],
)
def test_bad_s3_options(options, why):
    with pytest.raises(UsageError, match=why) as caught:
        S3Options(**options)
    assert "\n" not in str(caught.value)
