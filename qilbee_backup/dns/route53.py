"""The Route 53 provider: switch a name in a hosted zone through boto3.

Credentials, region and endpoint come from the standard AWS variables and files
(`AWS_ENDPOINT_URL` points it at moto in the tests). The zone is the one given by id
or name, else the hosted zone whose name is the longest suffix of the record. A switch
is one change batch (UPSERT the types the new value has, DELETE the exact old set of a
type it no longer has), then a bounded wait until Route 53 reports the change INSYNC.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from qilbee_backup.dns.base import (
    ADDRESS_TYPES,
    DnsError,
    DnsProvider,
    RecordValue,
    normalize_addresses,
    normalize_record,
    split_by_type,
)
from qilbee_backup.errors import UsageError

DEFAULT_WAIT_TIMEOUT = 300.0  # Route 53 usually propagates in well under a minute
WAIT_DELAY = 5  # seconds between GetChange calls
CHANGE_COMMENT = "qilbee-backup DNS switch"


class Route53Provider(DnsProvider):
    """Switches A/AAAA records in a Route 53 hosted zone (given by `zone_id`, `zone_name`, or found from the record)."""

    name = "route53"

    def __init__(
        self,
        zone_id: str | None = None,
        zone_name: str | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        self.zone_id = _bare_zone_id(zone_id) if zone_id else None
        self.zone_name = normalize_record(zone_name) if zone_name else None
        try:
            self.wait_timeout = float(wait_timeout)
        except (TypeError, ValueError):
            self.wait_timeout = float("nan")
        if not self.wait_timeout > 0:  # also false for NaN
            raise UsageError(f"the Route 53 wait timeout must be a positive number of seconds, not {wait_timeout!r}")
        self._client: Any | None = None
        self._zones: dict[str, tuple[str, str]] = {}  # record -> (zone id, zone name), found once

    def __repr__(self) -> str:
        return f"Route53Provider(zone_id={self.zone_id!r}, zone_name={self.zone_name!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # only when Route 53 is used: boto3 is slow to import

            self._client = self._call("client setup", boto3.session.Session().client, service_name="route53")
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def zone_for(self, record: str) -> tuple[str, str]:
        """(hosted zone id without "/hostedzone/", zone name without trailing dot) that holds `record`."""
        record = normalize_record(record)
        if record not in self._zones:
            self._zones[record] = self._find_zone(record)
        return self._zones[record]

    def _find_zone(self, record: str) -> tuple[str, str]:
        if self.zone_id is not None:
            zone = self._call("GetHostedZone", self.client.get_hosted_zone, Id=self.zone_id)["HostedZone"]
            zone_name = normalize_record(zone["Name"])
            if self.zone_name is not None and zone_name != self.zone_name:
                raise UsageError(f"hosted zone {self.zone_id} is {zone_name}, not {self.zone_name}")
            if not _in_zone(record, zone_name):
                raise UsageError(f"{record} is not in hosted zone {self.zone_id} ({zone_name})")
            return self.zone_id, zone_name
        zones = self._list_zones()
        if self.zone_name is not None:
            if not _in_zone(record, self.zone_name):
                raise UsageError(f"{record} is not in zone {self.zone_name}")
            candidates = [(zid, name) for zid, name in zones if name == self.zone_name]
            if not candidates:
                raise DnsError(f"no Route 53 hosted zone named {self.zone_name}")
        else:
            candidates = best_zones(record, zones)
            if not candidates:
                raise DnsError(f"no Route 53 hosted zone holds {record}")
        if len(candidates) > 1:
            ids = ", ".join(zid for zid, _ in candidates)
            raise UsageError(f"several hosted zones are named {candidates[0][1]} ({ids}); give the zone id")
        return candidates[0]

    def _list_zones(self) -> list[tuple[str, str]]:
        zones: list[tuple[str, str]] = []
        pages = self.client.get_paginator("list_hosted_zones").paginate()
        for page in self._call_iter("ListHostedZones", pages):
            for zone in page.get("HostedZones", []):
                zones.append((_bare_zone_id(zone["Id"]), normalize_record(zone["Name"])))
        return zones

    def _read(self, record: str) -> RecordValue | None:
        zone_id, _ = self.zone_for(record)
        sets = self._record_sets(zone_id, record)
        addresses = [value for rrset in sets.values() for value in _values(rrset)]
        if not addresses:
            return None
        return RecordValue(tuple(normalize_addresses(addresses)), min(int(s["TTL"]) for s in sets.values()))

    def _record_sets(self, zone_id: str, record: str) -> dict[str, Mapping[str, Any]]:
        """The record's A and AAAA record sets by type, as Route 53 returns them."""
        # Route 53 lists record sets sorted by name, then type: starting at (record, A),
        # its A and AAAA sets come first. A few more cover any routing-policy copies.
        response = self._call(
            "ListResourceRecordSets",
            self.client.list_resource_record_sets,
            HostedZoneId=zone_id,
            StartRecordName=f"{record}.",
            StartRecordType="A",
            MaxItems="10",
        )
        found: dict[str, Mapping[str, Any]] = {}
        for rrset in response.get("ResourceRecordSets", []):
            if normalize_route53_name(rrset["Name"]) != record or rrset["Type"] not in ADDRESS_TYPES:
                continue
            if "AliasTarget" in rrset or "SetIdentifier" in rrset:
                # An alias or a weighted/latency/failover set is not a plain address list we can swap.
                raise DnsError(f"route53: {record} {rrset['Type']} is an alias or routing-policy record; switch it by hand")
            found[rrset["Type"]] = rrset
        return found

    def _write(self, record: str, new: RecordValue | None) -> None:
        zone_id, _ = self.zone_for(record)
        existing = self._record_sets(zone_id, record)  # read afresh: DELETE must match what is there now
        wanted = split_by_type(new.addresses) if new is not None else {}
        changes: list[dict[str, Any]] = []
        for rdtype in ADDRESS_TYPES:
            values = wanted.get(rdtype)
            if values:
                rrset = _rrset(record, rdtype, values, new.ttl if new is not None else None)
                changes.append({"Action": "UPSERT", "ResourceRecordSet": rrset})
            elif rdtype in existing:
                # DELETE must name the record set exactly as it is (values and TTL).
                current = existing[rdtype]
                rrset = _rrset(record, rdtype, _values(current), int(current["TTL"]))
                changes.append({"Action": "DELETE", "ResourceRecordSet": rrset})
        if not changes:
            return
        response = self._call(
            "ChangeResourceRecordSets",
            self.client.change_resource_record_sets,
            HostedZoneId=zone_id,
            ChangeBatch={"Comment": CHANGE_COMMENT, "Changes": changes},
        )
        self._wait_insync(response["ChangeInfo"]["Id"])

    def _wait_insync(self, change_id: str) -> None:
        from botocore.exceptions import WaiterError

        attempts = max(1, math.ceil(self.wait_timeout / WAIT_DELAY))
        waiter = self.client.get_waiter("resource_record_sets_changed")
        try:
            waiter.wait(Id=change_id, WaiterConfig={"Delay": WAIT_DELAY, "MaxAttempts": attempts})
        except WaiterError as exc:
            raise DnsError(
                f"route53: change {change_id} was not INSYNC after {self.wait_timeout:g} s ({_one_line(exc)})"
            ) from None

    def _call(self, operation: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:  # noqa: BLE001 - botocore errors become one DnsError line
            raise _as_dns_error(operation, exc) from None

    def _call_iter(self, operation: str, pages: Iterable[Any]) -> Iterable[Any]:
        try:
            yield from pages
        except Exception as exc:  # noqa: BLE001 - as in _call
            raise _as_dns_error(operation, exc) from None


def best_zones(record: str, zones: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The zones (id, name) with the longest name that `record` lies in; several when names repeat."""
    matching = [(zid, name) for zid, name in zones if _in_zone(record, name)]
    if not matching:
        return []
    longest = max(len(name) for _, name in matching)
    return [(zid, name) for zid, name in matching if len(name) == longest]


def normalize_route53_name(name: str) -> str:
    """A record name as Route 53 returns it (trailing dot, octal escapes such as \\052 for *) in our form."""
    if "\\" in name:
        name = name.encode("latin-1").decode("unicode_escape")
    return name.lower().rstrip(".")


def _in_zone(record: str, zone: str) -> bool:
    return record == zone or record.endswith(f".{zone}")


def _bare_zone_id(zone_id: str) -> str:
    return zone_id.strip().rsplit("/", 1)[-1]


def _values(rrset: Mapping[str, Any]) -> list[str]:
    return [item["Value"] for item in rrset.get("ResourceRecords", [])]


def _rrset(record: str, rdtype: str, values: Iterable[str], ttl: int | None) -> dict[str, Any]:
    return {
        "Name": f"{record}.",
        "Type": rdtype,
        "TTL": ttl if ttl is not None else 60,
        "ResourceRecords": [{"Value": value} for value in values],
    }


def _as_dns_error(operation: str, exc: Exception) -> Exception:
    """One line naming the operation and AWS's error code; botocore messages carry no secrets."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return DnsError(f"route53 {operation}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message") or ""
        return DnsError(f"route53 {operation} failed: {code}: {_one_line(message)}".rstrip(": "))
    if isinstance(exc, BotoCoreError):
        return DnsError(f"route53 {operation} failed: {_one_line(exc)}")
    return exc


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
