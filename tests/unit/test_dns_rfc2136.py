"""The RFC 2136 provider's options and secret hygiene, without a server (BIND runs in the integration suite)."""

from __future__ import annotations

import base64
import logging
import secrets

import pytest

from qilbee_backup.dns import DnsError, Rfc2136Provider, open_dns_provider
from qilbee_backup.errors import UsageError

SECRET = base64.b64encode(secrets.token_bytes(32)).decode()


def _provider(**overrides) -> Rfc2136Provider:
    options = dict(zone="example.com", key_name="ddns-key", key_secret=SECRET)
    options.update(overrides)
    return Rfc2136Provider("127.0.0.1", **options)


def test_the_secret_is_in_no_repr_str_or_attribute_dump():
    provider = _provider()
    for text in (repr(provider), str(provider), repr(vars(provider)), repr(provider._keyring)):
        assert SECRET not in text
    assert repr(provider) == "Rfc2136Provider(server='127.0.0.1', port=53, zone='example.com.', key='ddns-key.' (hmac-sha256))"


def test_the_secret_is_in_no_log_or_error_of_a_failed_exchange(caplog, unused_port):
    provider = _provider(port=unused_port, timeout=0.5)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DnsError) as caught:
        provider.switch("db.example.com", ["192.0.2.1"])
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)
    assert SECRET not in caplog.text


@pytest.fixture
def unused_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released): connecting is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key_secret": "not base64!" + SECRET}, "secret of TSIG key 'ddns-key.' is not valid base64"),
        ({"key_algorithm": "hmac-sha3"}, "unknown TSIG algorithm 'hmac-sha3'"),
        ({"key_secret": None}, "both a TSIG key name and its secret"),
        ({"key_name": None}, "both a TSIG key name and its secret"),
        ({"port": 70000}, "not a port number"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"timeout": "soon"}, "timeout must be a positive number"),
        ({"zone": "bad..zone"}, "not a valid zone"),
    ],
)
def test_bad_options_are_one_line_usage_errors_without_the_secret(overrides, message):
    with pytest.raises(UsageError, match=message) as caught:
        _provider(**overrides)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("algorithm", ["hmac-md5", "HMAC-SHA1", "hmac-sha224", "hmac-sha256.", "hmac-sha384", "hmac-sha512"])
def test_the_rfc_8945_hmac_algorithms_are_accepted(algorithm):
    assert _provider(key_algorithm=algorithm).key_algorithm == algorithm


def test_a_record_outside_the_zone_is_a_usage_error_before_any_traffic():
    with pytest.raises(UsageError, match="db.example.org is not in zone example.com"):
        _provider(port=1).current("db.example.org")


def test_open_dns_provider_passes_cli_strings_through():
    provider = open_dns_provider("rfc2136", server="127.0.0.1", zone="example.com", port="5300", timeout="2.5")
    assert (provider.port, provider.timeout, provider.key_name) == (5300, 2.5, None)
