"""The manifest model: ids, safe paths, UTC times, totals, and a JSON round trip."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from qilbee_backup.errors import IntegrityError, UsageError
from qilbee_backup.manifest import FileEntry, Manifest, SourceInfo, new_backup_id, parse_backup_id

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def make_manifest(**overrides) -> Manifest:
    fields = dict(
        backup_id="20261126T020000Z-0a1b2c",
        kind="daily",
        created_at=datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc),
        source=SourceInfo(url="http://127.0.0.1:7474", server_version="0.9.0", mode="online", snapshot_id="snap-1"),
        stats={"graphs": [{"name": "social", "nodeCount": 10, "relationshipCount": 4}], "totals": {"nodeCount": 10}},
        files=[
            FileEntry(path="000012.sst", size=100, mode=0o644, sha256=SHA_A, stored_size=40),
            FileEntry(path="meta/CURRENT", size=16, mode=0o600, sha256=SHA_B),
        ],
    )
    fields.update(overrides)
    return Manifest(**fields)


def test_new_backup_ids_sort_by_time_and_parse_back():
    early, late = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc)
    a, b = new_backup_id(early), new_backup_id(late)
    assert a.startswith("20260102T030405Z-") and len(a) == 23
    assert sorted([b, a]) == [a, b]
    assert parse_backup_id(a) == early
    # Another timezone is converted to UTC first.
    assert new_backup_id(datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))).startswith("20260102T030405Z-")


def test_backup_ids_differ_even_in_the_same_second():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert len({new_backup_id(now) for _ in range(50)}) > 45


@pytest.mark.parametrize(
    "bad",
    ["latest", "", "20261126T020000Z", "20261126T020000Z-0A1B2C", "20261126T020000Z-0a1b2", "../20261126T020000Z-0a1b2c",
     "20261126T020000Z-0a1b2c.json", "20261326T020000Z-0a1b2c", " 20261126T020000Z-0a1b2c"],
)
def test_malformed_backup_ids_are_usage_errors(bad):
    with pytest.raises(UsageError) as caught:
        parse_backup_id(bad)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a\\b", "", ".", "a/", "x\x00y"]
)
def test_unsafe_file_paths_are_refused(path):
    with pytest.raises(ValidationError):
        FileEntry(path=path, size=1, mode=0o644, sha256=SHA_A)


def test_sha_and_sizes_are_checked():
    with pytest.raises(ValidationError):
        FileEntry(path="a", size=1, mode=0o644, sha256="A" * 64)
    with pytest.raises(ValidationError):
        FileEntry(path="a", size=-1, mode=0o644, sha256=SHA_A)
    with pytest.raises(ValidationError):
        FileEntry(path="a", size=1, mode=0o100644, sha256=SHA_A)  # permission bits only


def test_bytes_total_is_filled_in_and_must_match():
    assert make_manifest().bytes_total == 116
    with pytest.raises(ValidationError, match="bytes_total"):
        make_manifest(bytes_total=5)


def test_duplicate_paths_and_naive_times_are_refused():
    entry = FileEntry(path="a", size=1, mode=0o644, sha256=SHA_A)
    with pytest.raises(ValidationError, match="twice"):
        make_manifest(files=[entry, entry])
    with pytest.raises(ValidationError, match="timezone"):
        make_manifest(created_at=datetime(2026, 1, 1))


def test_created_at_is_stored_in_utc():
    m = make_manifest(created_at=datetime(2026, 11, 26, 4, 0, tzinfo=timezone(timedelta(hours=2))))
    assert m.created_at == datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc) and m.created_at.utcoffset() == timedelta(0)


def test_source_url_never_keeps_credentials():
    source = SourceInfo(url="https://admin:s3cret@db.example:7474/x", mode="offline", container="qilbee")
    assert source.url == "https://db.example:7474/x"
    assert "s3cret" not in make_manifest(source=source).to_json().decode()


def test_json_round_trip_is_lossless():
    m = make_manifest()
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert again.blob_shas() == {SHA_A, SHA_B}
    assert json.loads(m.to_json())["format_version"] == 2


def test_a_format_1_manifest_is_still_read_and_grouped_by_its_source_url():
    raw = json.loads(make_manifest().to_json())
    raw["format_version"] = 1
    del raw["source"]["name"]
    old = Manifest.from_json(json.dumps(raw).encode())
    assert old.source.name is None
    assert old.series == ("127.0.0.1-7474", "daily")
    named = make_manifest(source=SourceInfo(url="http://10.0.0.9:7474", mode="online", name="prod"))
    assert named.series == ("prod", "daily")


@pytest.mark.parametrize("url, name", [
    ("http://127.0.0.1:7474", "127.0.0.1-7474"),
    ("https://DB.Example.COM", "db.example.com-443"),
    ("http://db.example.com/", "db.example.com-80"),
    ("http://user:pw@[::1]:7474/x", "1-7474"),
    ("not a url", "source"),
])
def test_default_source_names_are_host_and_port(url, name):
    from qilbee_backup.manifest import check_source_name, default_source_name

    assert default_source_name(url) == name
    assert check_source_name(default_source_name(url)) == name


@pytest.mark.parametrize("bad", ["", "Prod", "-x", "a b", "a/b", "x" * 65, "ü"])
def test_bad_source_names_are_usage_errors(bad):
    from qilbee_backup.manifest import check_source_name

    with pytest.raises(UsageError):
        check_source_name(bad)
    with pytest.raises(ValidationError):
        SourceInfo(url="http://h:1", mode="online", name=bad)


@pytest.mark.parametrize("path, why", [
    ("/".join(["d"] * 65), "levels deep"),
    ("/".join(["d"] * 2100), "levels deep"),
    ("x" * 256, "longer than 255"),
    ("d/" + "é" * 128, "longer than 255"),  # 256 bytes in UTF-8
    ("/".join(["y" * 200] * 21), "longer than 4096"),
])
def test_hostile_paths_are_refused_by_validation(path, why):
    with pytest.raises(ValidationError, match=why):
        FileEntry(path=path, size=1, mode=0o644, sha256=SHA_A)
    raw = json.loads(make_manifest().to_json())
    raw["files"][0]["path"] = path
    with pytest.raises(IntegrityError) as caught:
        Manifest.from_json(json.dumps(raw).encode(), origin="backups/x.json")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_paths_at_the_limits_are_accepted():
    FileEntry(path="/".join(["d"] * 64), size=1, mode=0o644, sha256=SHA_A)
    FileEntry(path="x" * 255, size=1, mode=0o644, sha256=SHA_A)


def test_a_damaged_or_newer_manifest_is_an_integrity_error_in_one_line():
    raw = json.loads(make_manifest().to_json())
    raw["files"][0]["path"] = "../../etc/cron.d/x"
    with pytest.raises(IntegrityError) as caught:
        Manifest.from_json(json.dumps(raw).encode(), origin="backups/x.json")
    assert "backups/x.json" in str(caught.value) and "\n" not in str(caught.value)
    raw = json.loads(make_manifest().to_json())
    raw["format_version"] = 3
    with pytest.raises(IntegrityError, match="format version 3"):
        Manifest.from_json(json.dumps(raw).encode())
    with pytest.raises(IntegrityError):
        Manifest.from_json(b"{not json")
