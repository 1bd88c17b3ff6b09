"""The DNS provider interface without a backend: names, addresses, DnsChange, the switch/rollback logic.

`MemoryProvider` fakes the storage boundary (a dict) so the base class's own logic is
tested alone; every real provider runs the shared suite in tests/integration/test_dns_providers.py.
"""

from __future__ import annotations

import json

import pytest

from qilbee_backup.dns import DnsChange, DnsError, HostsFileProvider, Rfc2136Provider, open_dns_provider
from qilbee_backup.dns.base import DnsProvider, RecordValue, normalize_addresses, normalize_record, split_by_type
from qilbee_backup.errors import UsageError


class MemoryProvider(DnsProvider):
    """Records in a dict; `ignore_writes` plays a server that accepts a change but does not apply it."""

    name = "memory"

    def __init__(self, ignore_writes: bool = False) -> None:
        self.records: dict[str, RecordValue] = {}
        self.writes: list[tuple[str, RecordValue | None]] = []
        self.ignore_writes = ignore_writes

    def _read(self, record: str) -> RecordValue | None:
        return self.records.get(record)

    def _write(self, record: str, new: RecordValue | None) -> None:
        self.writes.append((record, new))
        if self.ignore_writes:
            return
        if new is None:
            self.records.pop(record, None)
        else:
            self.records[record] = new


@pytest.mark.parametrize(
    ("given", "expected"),
    [("db.example.com", "db.example.com"), ("DB.Example.COM.", "db.example.com"), (" _svc.x-1.test ", "_svc.x-1.test"), ("localhost", "localhost")],
)
def test_record_names_are_normalised(given, expected):
    assert normalize_record(given) == expected


@pytest.mark.parametrize("bad", ["", ".", "a..b", "-db.example.com", "db-.example.com", "*.example.com", "db example.com", "a" * 64 + ".com", "x." * 127 + "com"])
def test_invalid_record_names_are_usage_errors(bad):
    with pytest.raises(UsageError, match="not a valid DNS record name"):
        normalize_record(bad)


def test_addresses_are_parsed_deduplicated_and_sorted_ipv4_first():
    given = ["2001:db8::10", "192.0.2.10", "2001:DB8:0::2", "192.0.2.9", "192.0.2.10"]
    assert normalize_addresses(given) == ["192.0.2.9", "192.0.2.10", "2001:db8::2", "2001:db8::10"]
    assert normalize_addresses("192.0.2.1") == ["192.0.2.1"]  # a lone string is one address, not characters


@pytest.mark.parametrize(
    ("bad", "message"),
    [(["db.example.com"], "not an IP address: 'db.example.com'"), (["192.0.2.300"], "not an IP address"), (["fe80::1%eth0"], "scoped"), ([], "at least one address")],
)
def test_bad_addresses_are_usage_errors(bad, message):
    with pytest.raises(UsageError, match=message):
        normalize_addresses(bad)


def test_addresses_split_into_a_and_aaaa():
    assert split_by_type(["192.0.2.1", "2001:db8::1", "192.0.2.2"]) == {"A": ["192.0.2.1", "192.0.2.2"], "AAAA": ["2001:db8::1"]}


def test_dns_change_round_trips_through_json():
    change = DnsChange(provider="rfc2136", record="db.example.com", old=["192.0.2.1"], new=["2001:db8::1"], ttl=60, old_ttl=300)
    assert DnsChange.from_dict(json.loads(json.dumps(change.to_dict()))) == change
    first = DnsChange(provider="hosts", record="db.example.com", old=None, new=["192.0.2.1"], ttl=60)
    assert first.to_dict() == {"provider": "hosts", "record": "db.example.com", "old": None, "new": ["192.0.2.1"], "ttl": 60, "old_ttl": None}
    assert DnsChange.from_dict(first.to_dict()) == first


def test_dns_change_from_a_bad_record_is_one_line_usage_error():
    with pytest.raises(UsageError, match="it has no 'record'"):
        DnsChange.from_dict({"provider": "hosts", "old": None, "new": ["192.0.2.1"], "ttl": 60})
    with pytest.raises(UsageError, match="not an IP address"):
        DnsChange.from_dict({"provider": "hosts", "record": "db.test", "old": None, "new": ["db"], "ttl": 60})


def test_switch_records_old_value_and_ttl_and_rollback_restores_them():
    provider = MemoryProvider()
    provider.records["db.test"] = RecordValue(("192.0.2.1",), 300)
    change = provider.switch("DB.test.", ["2001:db8::7", "192.0.2.7"], ttl=30)
    assert change == DnsChange("memory", "db.test", ["192.0.2.1"], ["192.0.2.7", "2001:db8::7"], 30, old_ttl=300)
    assert provider.current("db.test") == ["192.0.2.7", "2001:db8::7"]
    provider.rollback(change)
    assert provider.records["db.test"] == RecordValue(("192.0.2.1",), 300)


def test_rollback_of_a_first_switch_deletes_the_record():
    provider = MemoryProvider()
    change = provider.switch("db.test", ["192.0.2.7"])
    assert change.old is None and change.ttl == 60
    provider.rollback(change)
    assert provider.current("db.test") is None
    assert provider.writes[-1] == ("db.test", None)


def test_a_change_the_backend_did_not_apply_is_a_dns_error():
    provider = MemoryProvider(ignore_writes=True)
    with pytest.raises(DnsError, match="db.test holds no record after the change, expected 192.0.2.7"):
        provider.switch("db.test", ["192.0.2.7"])


def test_rollback_with_another_provider_is_refused():
    change = DnsChange(provider="route53", record="db.test", old=None, new=["192.0.2.7"], ttl=60)
    with pytest.raises(UsageError, match="cannot roll back a route53 change with the memory provider"):
        MemoryProvider().rollback(change)


@pytest.mark.parametrize("ttl", [-1, 2**31, 1.5, True, "60"])
def test_bad_ttl_is_a_usage_error_before_anything_changes(ttl):
    provider = MemoryProvider()
    with pytest.raises(UsageError, match="TTL"):
        provider.switch("db.test", ["192.0.2.7"], ttl=ttl)
    assert provider.writes == []


def test_open_dns_provider_builds_each_provider(tmp_path):
    hosts = open_dns_provider("hosts", path=str(tmp_path / "hosts"), unused_by_cli=None)
    assert isinstance(hosts, HostsFileProvider) and hosts.path == tmp_path / "hosts"
    rfc = open_dns_provider("rfc2136", server="127.0.0.1", zone="example.com", port="5353")
    assert isinstance(rfc, Rfc2136Provider) and rfc.port == 5353


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("bind", {}, "unknown DNS provider 'bind'; choose one of hosts, rfc2136, route53"),
        ("hosts", {"zone": "x"}, "the hosts DNS provider takes no option"),
        ("rfc2136", {"server": "127.0.0.1"}, "the rfc2136 DNS provider needs option\\(s\\) zone"),
        ("rfc2136", {"zone": "example.com"}, "needs option\\(s\\) server"),
        ("route53", {"region": "eu-west-1"}, "takes no option\\(s\\) region"),
    ],
)
def test_open_dns_provider_errors_are_one_line_usage_errors(name, options, message):
    with pytest.raises(UsageError, match=message) as caught:
        open_dns_provider(name, **options)
    assert "\n" not in str(caught.value)
