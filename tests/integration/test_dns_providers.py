"""One shared suite for every DNS provider (restic's backend-test model), against real backends.

hosts: a file in a temp dir; route53: moto_server (boto3 through AWS_ENDPOINT_URL);
rfc2136: BIND 9 with a TSIG-signed dynamic zone (tests/plugins/bind.py). Each test
checks through the provider and also looks behind its back (the file, the Route 53
API, a direct DNS query) so a provider cannot agree with itself while being wrong.
Then the tests only one provider needs.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from qilbee_backup.dns import (
    DnsChange,
    DnsError,
    DnsProvider,
    HostsFileProvider,
    Rfc2136Provider,
    Route53Provider,
    open_dns_provider,
)
from qilbee_backup.errors import UsageError

PROVIDER_NAMES = ["hosts", "route53", "rfc2136"]
ROUTE53_ZONE = "qilbee-r53.test"
HOSTS_DOMAIN = "qilbee.test"

pytestmark = pytest.mark.timeout(120)


@dataclass
class Target:
    """A provider under test, the domain its records go in, and a way to see the backend's own truth."""

    provider: DnsProvider
    domain: str
    observe: Callable[[str], dict[str, set[str]]]  # record -> {"A": {...}, "AAAA": {...}} as the backend holds it
    ttl_of: Callable[[str], int | None]  # record -> the backend's TTL for it (None: hosts has none)

    def new_record(self) -> str:
        return f"db-{uuid.uuid4().hex[:10]}.{self.domain}"


# -- backends, looked at directly -------------------------------------------------------------


def _hosts_observe(path: Path) -> Callable[[str], dict[str, set[str]]]:
    def observe(record: str) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {"A": set(), "AAAA": set()}
        if not path.exists():
            return seen
        for line in path.read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and record in fields[1:]:
                address = ipaddress.ip_address(fields[0])
                seen["A" if address.version == 4 else "AAAA"].add(str(address))
        return seen

    return observe


def _dns_query(bind, record: str, rdtype: str) -> dns.message.Message:
    # UDP here (the provider reads over TCP): a second, independent path to the same server.
    query = dns.message.make_query(f"{record}.", rdtype)
    return dns.query.udp(query, bind.server, port=bind.port, timeout=5)


def _bind_observe(bind) -> Callable[[str], dict[str, set[str]]]:
    def observe(record: str) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for rdtype in ("A", "AAAA"):
            response = _dns_query(bind, record, rdtype)
            seen[rdtype] = {rdata.address for rrset in response.answer for rdata in rrset}
        return seen

    return observe


def _bind_ttl(bind) -> Callable[[str], int | None]:
    def ttl_of(record: str) -> int | None:
        for rdtype in ("A", "AAAA"):
            response = _dns_query(bind, record, rdtype)
            if response.answer:
                return response.answer[0].ttl
        return None

    return ttl_of


def _route53_sets(client, zone_id: str, record: str) -> list[dict]:
    response = client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=f"{record}.", MaxItems="20")
    return [s for s in response["ResourceRecordSets"] if s["Name"].rstrip(".") == record and s["Type"] in ("A", "AAAA")]


def _route53_observe(client, zone_id: str) -> Callable[[str], dict[str, set[str]]]:
    def observe(record: str) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {"A": set(), "AAAA": set()}
        for rrset in _route53_sets(client, zone_id, record):
            seen[rrset["Type"]] |= {r["Value"] for r in rrset["ResourceRecords"]}
        return seen

    return observe


def _route53_ttl(client, zone_id: str) -> Callable[[str], int | None]:
    def ttl_of(record: str) -> int | None:
        sets = _route53_sets(client, zone_id, record)
        return sets[0]["TTL"] if sets else None

    return ttl_of


@pytest.fixture(scope="session")
def route53_client(moto_server):
    import boto3

    client = boto3.session.Session().client("route53")
    yield client
    client.close()


@pytest.fixture(scope="session")
def route53_zone(route53_client) -> str:
    """A hosted zone on moto for the session; its id without the /hostedzone/ prefix."""
    response = route53_client.create_hosted_zone(Name=f"{ROUTE53_ZONE}.", CallerReference=uuid.uuid4().hex)
    return response["HostedZone"]["Id"].rsplit("/", 1)[-1]


@pytest.fixture(params=PROVIDER_NAMES)
def target(request, tmp_path) -> Iterator[Target]:
    if request.param == "hosts":
        path = tmp_path / "hosts"
        provider = open_dns_provider("hosts", path=str(path))
        yield Target(provider, HOSTS_DOMAIN, _hosts_observe(path), lambda record: None)
    elif request.param == "route53":
        client = request.getfixturevalue("route53_client")
        zone_id = request.getfixturevalue("route53_zone")
        with open_dns_provider("route53") as provider:  # the zone is found from the record's name
            yield Target(provider, ROUTE53_ZONE, _route53_observe(client, zone_id), _route53_ttl(client, zone_id))
    else:
        bind = request.getfixturevalue("bind_server")
        provider = open_dns_provider(
            "rfc2136",
            server=bind.server,
            port=bind.port,
            zone=bind.zone,
            key_name=bind.key_name,
            key_secret=bind.key_secret,
            key_algorithm=bind.key_algorithm,
        )
        yield Target(provider, bind.zone.rstrip("."), _bind_observe(bind), _bind_ttl(bind))


# -- the shared suite ----------------------------------------------------------------------------


def test_current_of_an_unknown_record_is_none(target):
    record = target.new_record()
    assert target.provider.current(record) is None
    assert target.observe(record) == {"A": set(), "AAAA": set()}


def test_switch_creates_the_record(target):
    record = target.new_record()
    change = target.provider.switch(record, ["192.0.2.10"], ttl=120)
    assert change == DnsChange(provider=target.provider.name, record=record, old=None, new=["192.0.2.10"], ttl=120)
    assert target.provider.current(record) == ["192.0.2.10"]
    assert target.observe(record) == {"A": {"192.0.2.10"}, "AAAA": set()}


def test_switch_again_records_old_and_new(target):
    record = target.new_record()
    target.provider.switch(record, ["192.0.2.10"], ttl=120)
    change = target.provider.switch(record, ["192.0.2.20"], ttl=60)
    assert (change.old, change.new, change.ttl) == (["192.0.2.10"], ["192.0.2.20"], 60)
    assert target.provider.current(record) == ["192.0.2.20"]
    assert target.observe(record) == {"A": {"192.0.2.20"}, "AAAA": set()}
    assert target.ttl_of(record) in (60, None)


def test_rollback_restores_the_previous_value_exactly(target):
    record = target.new_record()
    target.provider.switch(record, ["192.0.2.1", "2001:db8::1"], ttl=300)
    change = target.provider.switch(record, ["198.51.100.7"], ttl=30)
    target.provider.rollback(change)
    assert target.provider.current(record) == ["192.0.2.1", "2001:db8::1"]
    assert target.observe(record) == {"A": {"192.0.2.1"}, "AAAA": {"2001:db8::1"}}
    assert target.ttl_of(record) in (300, None)  # the old TTL came back too


def test_rollback_of_a_first_switch_removes_the_record(target):
    record = target.new_record()
    change = target.provider.switch(record, ["192.0.2.30", "2001:db8::30"])
    target.provider.rollback(change)
    assert target.provider.current(record) is None
    assert target.observe(record) == {"A": set(), "AAAA": set()}


def test_rollback_from_a_saved_change_in_a_later_run(target):
    record = target.new_record()
    target.provider.switch(record, ["192.0.2.40"])
    saved = json.dumps(target.provider.switch(record, ["192.0.2.41"]).to_dict())
    target.provider.rollback(DnsChange.from_dict(json.loads(saved)))
    assert target.provider.current(record) == ["192.0.2.40"]


def test_ipv6_goes_in_aaaa(target):
    record = target.new_record()
    change = target.provider.switch(record, ["2001:DB8:0:0::5"])
    assert change.new == ["2001:db8::5"]
    assert target.provider.current(record) == ["2001:db8::5"]
    assert target.observe(record) == {"A": set(), "AAAA": {"2001:db8::5"}}


def test_multiple_addresses_of_both_families(target):
    record = target.new_record()
    target.provider.switch(record, ["2001:db8::2", "192.0.2.9", "192.0.2.10", "2001:db8::1"])
    assert target.provider.current(record) == ["192.0.2.9", "192.0.2.10", "2001:db8::1", "2001:db8::2"]
    assert target.observe(record) == {"A": {"192.0.2.9", "192.0.2.10"}, "AAAA": {"2001:db8::1", "2001:db8::2"}}


def test_switch_sets_exactly_the_addresses_given(target):
    record = target.new_record()
    target.provider.switch(record, ["192.0.2.1", "192.0.2.2", "2001:db8::1"])
    change = target.provider.switch(record, ["2001:db8::9"])
    assert change.old == ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    assert target.observe(record) == {"A": set(), "AAAA": {"2001:db8::9"}}


def test_names_with_and_without_trailing_dot_are_one_record(target):
    record = target.new_record()
    change = target.provider.switch(record.upper() + ".", ["192.0.2.50"])
    assert change.record == record
    assert target.provider.current(record) == ["192.0.2.50"]
    assert target.provider.current(record + ".") == ["192.0.2.50"]


def test_a_host_name_is_not_an_address_and_changes_nothing(target):
    record = target.new_record()
    target.provider.switch(record, ["192.0.2.60"])
    with pytest.raises(UsageError, match="not an IP address"):
        target.provider.switch(record, ["192.0.2.61", "db.example.com"])
    assert target.observe(record) == {"A": {"192.0.2.60"}, "AAAA": set()}


def test_one_record_does_not_touch_another(target):
    mine, theirs = target.new_record(), target.new_record()
    target.provider.switch(theirs, ["192.0.2.70"])
    change = target.provider.switch(mine, ["192.0.2.71"])
    target.provider.rollback(change)
    assert target.provider.current(theirs) == ["192.0.2.70"]


# -- rfc2136 against BIND --------------------------------------------------------------------------


def _rfc2136(bind, **overrides) -> Rfc2136Provider:
    options = dict(
        port=bind.port,
        zone=bind.zone,
        key_name=bind.key_name,
        key_secret=bind.key_secret,
        key_algorithm=bind.key_algorithm,
    )
    options.update(overrides)
    return Rfc2136Provider(bind.server, **options)


def test_rfc2136_wrong_tsig_secret_is_refused_in_one_line_without_the_secret(bind_server):
    record = f"wrong-key-{uuid.uuid4().hex[:8]}.{bind_server.zone}"
    _rfc2136(bind_server).switch(record, ["192.0.2.80"])
    wrong_secret = base64.b64encode(secrets.token_bytes(32)).decode()
    impostor = _rfc2136(bind_server, key_secret=wrong_secret)
    with pytest.raises(DnsError) as caught:
        impostor.switch(record, ["203.0.113.66"])
    message = str(caught.value)
    assert "refused" in message and "TSIG key" in message
    assert "\n" not in message
    assert wrong_secret not in message and bind_server.key_secret not in message
    assert wrong_secret not in repr(impostor) and wrong_secret not in str(vars(impostor))
    assert _bind_observe(bind_server)(record.rstrip(".")) == {"A": {"192.0.2.80"}, "AAAA": set()}


def test_rfc2136_unknown_key_name_is_refused(bind_server):
    provider = _rfc2136(bind_server, key_name="no-such-key.")
    record = f"unknown-key-{uuid.uuid4().hex[:8]}.{bind_server.zone}"
    with pytest.raises(DnsError, match="refused"):
        provider.switch(record, ["192.0.2.81"])
    assert provider.current(record) is None


def test_rfc2136_unsigned_update_is_refused(bind_server):
    provider = Rfc2136Provider(bind_server.server, port=bind_server.port, zone=bind_server.zone)
    with pytest.raises(DnsError, match=r"refused the update .*\(REFUSED\)"):
        provider.switch(f"unsigned.{bind_server.zone}", ["192.0.2.82"])


def test_rfc2136_change_is_served_by_bind(bind_server):
    record = f"served-{uuid.uuid4().hex[:8]}.{bind_server.zone.rstrip('.')}"
    _rfc2136(bind_server).switch(record, ["192.0.2.90", "2001:db8::90"], ttl=45)
    for rdtype, address in (("A", "192.0.2.90"), ("AAAA", "2001:db8::90")):
        response = _dns_query(bind_server, record, rdtype)
        assert response.rcode() == dns.rcode.NOERROR
        (rrset,) = response.answer
        assert rrset.rdtype == dns.rdatatype.from_text(rdtype)
        assert [rdata.address for rdata in rrset] == [address]
        assert rrset.ttl == 45


def test_rfc2136_record_outside_the_zone_is_a_usage_error(bind_server):
    with pytest.raises(UsageError, match="not in zone"):
        _rfc2136(bind_server).switch("db.example.org", ["192.0.2.1"])


def test_rfc2136_unreachable_server_is_one_line(bind_server):
    from tests.plugins.bind import free_port

    provider = _rfc2136(bind_server, port=free_port(), timeout=1.0)
    with pytest.raises(DnsError) as caught:
        provider.current(f"x.{bind_server.zone}")
    assert "\n" not in str(caught.value) and bind_server.key_secret not in str(caught.value)


# -- hosts file -----------------------------------------------------------------------------------

HOSTS_TEXT = (
    "# /etc/hosts: static table lookup for hostnames\n"
    "127.0.0.1\tlocalhost\n"
    "10.0.0.5   db.qilbee.test   db  # the old primary\n"
    "10.0.0.6 db.qilbee.test\n"
    "\n"
    "::1     localhost ip6-localhost ip6-loopback\r\n"
    "# 10.9.9.9 db.qilbee.test (commented out: not an entry)\n"
    "192.168.1.20 other.qilbee.test"  # no newline at the end
)


def test_hosts_keeps_comments_unrelated_lines_and_mode(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(HOSTS_TEXT.encode())
    path.chmod(0o640)
    provider = HostsFileProvider(path)
    assert provider.current("db.qilbee.test") == ["10.0.0.5", "10.0.0.6"]

    change = provider.switch("db.qilbee.test", ["10.1.0.5", "fd00::5"])

    assert change.old == ["10.0.0.5", "10.0.0.6"]
    assert path.read_bytes() == (
        b"# /etc/hosts: static table lookup for hostnames\n"
        b"127.0.0.1\tlocalhost\n"
        b"10.0.0.5   db  # the old primary\n"
        b"\n"
        b"::1     localhost ip6-localhost ip6-loopback\r\n"
        b"# 10.9.9.9 db.qilbee.test (commented out: not an entry)\n"
        b"192.168.1.20 other.qilbee.test\n"
        b"10.1.0.5\tdb.qilbee.test\n"
        b"fd00::5\tdb.qilbee.test\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["hosts"]  # no temporary file left behind

    provider.rollback(change)
    assert provider.current("db.qilbee.test") == ["10.0.0.5", "10.0.0.6"]
    assert provider.current("db") == ["10.0.0.5"]
    assert provider.current("other.qilbee.test") == ["192.168.1.20"]


def test_hosts_missing_file_is_created(tmp_path):
    path = tmp_path / "new-hosts"
    HostsFileProvider(path).switch("db.qilbee.test", ["192.0.2.1"])
    assert path.read_text() == "192.0.2.1\tdb.qilbee.test\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_hosts_unwritable_directory_is_one_line(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(DnsError, match="cannot write hosts file"):
            HostsFileProvider(path).switch("db.qilbee.test", ["192.0.2.1"])
    finally:
        tmp_path.chmod(0o700)
    assert path.read_text() == "127.0.0.1 localhost\n"


# -- Route 53 on moto ---------------------------------------------------------------------------


def test_route53_finds_the_longest_matching_zone(route53_client, route53_zone):
    deep = route53_client.create_hosted_zone(Name=f"deep.{ROUTE53_ZONE}.", CallerReference=uuid.uuid4().hex)
    deep_id = deep["HostedZone"]["Id"].rsplit("/", 1)[-1]
    record = f"db-{uuid.uuid4().hex[:8]}.deep.{ROUTE53_ZONE}"
    with Route53Provider() as provider:
        assert provider.zone_for(record) == (deep_id, f"deep.{ROUTE53_ZONE}")
        assert provider.zone_for(f"db.{ROUTE53_ZONE}") == (route53_zone, ROUTE53_ZONE)
        change = provider.switch(record + ".", ["192.0.2.100"])
        assert _route53_observe(route53_client, deep_id)(record) == {"A": {"192.0.2.100"}, "AAAA": set()}
        assert _route53_observe(route53_client, route53_zone)(record) == {"A": set(), "AAAA": set()}
        provider.rollback(change)
    assert _route53_sets(route53_client, deep_id, record) == []
    route53_client.delete_hosted_zone(Id=deep_id)


def test_route53_zone_given_by_id_or_name(route53_client, route53_zone):
    record = f"db-{uuid.uuid4().hex[:8]}.{ROUTE53_ZONE}"
    with open_dns_provider("route53", zone_id=f"/hostedzone/{route53_zone}") as by_id:
        by_id.switch(record, ["192.0.2.110"])
    with open_dns_provider("route53", zone_name=ROUTE53_ZONE + ".") as by_name:
        assert by_name.current(record) == ["192.0.2.110"]
        with pytest.raises(UsageError, match="not in zone"):
            by_name.current("db.example.org")


def test_route53_record_in_no_hosted_zone_is_one_line(moto_server):
    with Route53Provider() as provider, pytest.raises(DnsError, match="no Route 53 hosted zone holds db.example.org"):
        provider.switch("db.example.org", ["192.0.2.1"])


def test_route53_unknown_zone_id_is_one_line_without_credentials(moto_server):
    with Route53Provider(zone_id="ZNOSUCHZONE") as provider, pytest.raises(DnsError) as caught:
        provider.current(f"db.{ROUTE53_ZONE}")
    message = str(caught.value)
    assert "NoSuchHostedZone" in message and "\n" not in message
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in message
