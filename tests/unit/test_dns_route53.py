"""The Route 53 provider's pure parts: choosing the hosted zone, reading names, wording errors.

Talking to Route 53 itself is tested on moto_server in tests/integration/test_dns_providers.py.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from qilbee_backup.dns import DnsError, Route53Provider
from qilbee_backup.dns.route53 import _as_dns_error, best_zones, normalize_route53_name
from qilbee_backup.errors import UsageError

ZONES = [("Z1", "example.com"), ("Z2", "prod.example.com"), ("Z3", "ample.com"), ("Z4", "other.org")]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("db.prod.example.com", [("Z2", "prod.example.com")]),
        ("prod.example.com", [("Z2", "prod.example.com")]),
        ("db.example.com", [("Z1", "example.com")]),
        ("db.xample.com", []),  # "ample.com" is a suffix of the text, not of the labels
        ("db.example.net", []),
    ],
)
def test_the_longest_zone_on_a_label_boundary_wins(record, expected):
    assert best_zones(record, ZONES) == expected


def test_zones_with_the_same_name_are_all_returned():
    assert best_zones("db.example.com", [("Z1", "example.com"), ("Z9", "example.com")]) == [("Z1", "example.com"), ("Z9", "example.com")]


def test_route53_names_are_read_in_our_form():
    assert normalize_route53_name("DB.Example.com.") == "db.example.com"
    assert normalize_route53_name("\\052.example.com.") == "*.example.com"


def test_zone_options_are_normalised():
    provider = Route53Provider(zone_id="/hostedzone/Z123", zone_name="Example.COM.")
    assert (provider.zone_id, provider.zone_name) == ("Z123", "example.com")
    assert repr(provider) == "Route53Provider(zone_id='Z123', zone_name='example.com')"


def test_a_bad_wait_timeout_is_a_usage_error():
    with pytest.raises(UsageError, match="wait timeout"):
        Route53Provider(wait_timeout=0)
    with pytest.raises(UsageError, match="wait timeout"):
        Route53Provider(wait_timeout="soon")


def test_aws_errors_become_one_line_dns_errors():
    client_error = ClientError(
        {"Error": {"Code": "InvalidChangeBatch", "Message": "Tried to delete\nresource record set that does not exist"}},
        "ChangeResourceRecordSets",
    )
    error = _as_dns_error("ChangeResourceRecordSets", client_error)
    assert isinstance(error, DnsError)
    assert str(error) == (
        "route53 ChangeResourceRecordSets failed: InvalidChangeBatch: Tried to delete resource record set that does not exist"
    )
    assert "AWS_ACCESS_KEY_ID" in str(_as_dns_error("ListHostedZones", NoCredentialsError()))
    unreachable = _as_dns_error("GetChange", EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert isinstance(unreachable, DnsError) and "\n" not in str(unreachable)
    other = ValueError("not ours")
    assert _as_dns_error("GetChange", other) is other
