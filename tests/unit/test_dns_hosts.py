"""The hosts-file provider's editing rules, on real files in a temp dir."""

from __future__ import annotations

import os
import stat

import pytest

from qilbee_backup.dns import HostsFileProvider


@pytest.fixture
def hosts(tmp_path):
    path = tmp_path / "hosts"

    def make(text: str) -> HostsFileProvider:
        path.write_bytes(text.encode())
        return HostsFileProvider(path)

    return make


def test_name_is_taken_off_a_line_with_aliases_keeping_the_rest_as_written(hosts, tmp_path):
    provider = hosts("10.0.0.5\tdb.test  primary.test\tDB.TEST.  other  # note\n")
    provider.switch("db.test", ["10.0.0.9"])
    # each name goes with the blank before it: "\tdb.test" and "\tDB.TEST."
    assert (tmp_path / "hosts").read_text() == "10.0.0.5  primary.test  other  # note\n10.0.0.9\tdb.test\n"


def test_a_line_left_without_names_goes_with_its_comment(hosts, tmp_path):
    provider = hosts("# header\n10.0.0.5 db.test # old\n127.0.0.1 localhost\n")
    change = provider.switch("db.test", ["10.0.0.9"])
    assert change.old == ["10.0.0.5"]
    assert (tmp_path / "hosts").read_text() == "# header\n127.0.0.1 localhost\n10.0.0.9\tdb.test\n"


def test_names_match_case_insensitively_and_with_trailing_dot(hosts):
    provider = hosts("10.0.0.5 DB.Test.\n")
    assert provider.current("db.test") == ["10.0.0.5"]


def test_comments_blank_and_unparsable_lines_are_not_entries(hosts, tmp_path):
    text = "#10.0.0.1 db.test\n\n   \nnot-an-ip db.test\n10.0.0.2\nfe80::1%lo db.test\n"
    provider = hosts(text)
    assert provider.current("db.test") is None
    change = provider.switch("db.test", ["10.0.0.9"])
    assert (tmp_path / "hosts").read_text() == text + "10.0.0.9\tdb.test\n"
    provider.rollback(change)
    assert (tmp_path / "hosts").read_text() == text


def test_addresses_in_the_file_are_read_normalised(hosts):
    provider = hosts("2001:DB8:0:0::1 db.test\n192.0.2.1 db.test\n")
    assert provider.current("db.test") == ["192.0.2.1", "2001:db8::1"]


def test_crlf_lines_and_undecodable_bytes_stay_byte_for_byte(tmp_path):
    path = tmp_path / "hosts"
    original = b"127.0.0.1 localhost\r\n10.0.0.7 caf\xe9.test\r\n"
    path.write_bytes(original)
    provider = HostsFileProvider(path)
    change = provider.switch("db.test", ["10.0.0.9"])
    assert path.read_bytes() == original + b"10.0.0.9\tdb.test\n"
    provider.rollback(change)
    assert path.read_bytes() == original


def test_rollback_of_an_absent_name_leaves_a_missing_file_missing(tmp_path):
    path = tmp_path / "hosts"
    provider = HostsFileProvider(path)
    change = provider.switch("db.test", ["10.0.0.9"])
    path.unlink()
    provider.rollback(change)
    assert not path.exists()


def test_mode_is_kept_across_switch_and_rollback(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    path.chmod(0o604)
    provider = HostsFileProvider(path)
    provider.rollback(provider.switch("db.test", ["10.0.0.9"]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


def test_a_symlinked_hosts_file_is_edited_where_it_lives(tmp_path):
    real = tmp_path / "etc" / "hosts.real"
    real.parent.mkdir()
    real.write_text("127.0.0.1 localhost\n")
    link = tmp_path / "hosts"
    link.symlink_to(real)
    HostsFileProvider(link).switch("db.test", ["10.0.0.9"])
    assert link.is_symlink()
    assert real.read_text() == "127.0.0.1 localhost\n10.0.0.9\tdb.test\n"
    assert sorted(os.listdir(real.parent)) == ["hosts.real"]


def test_repr_names_the_file():
    assert repr(HostsFileProvider("/tmp/x/hosts")) == "HostsFileProvider(path='/tmp/x/hosts')"
