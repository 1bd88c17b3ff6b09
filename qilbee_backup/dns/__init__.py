"""DNS providers: the last step of disaster recovery points a name at the new instance.

    provider = open_dns_provider("hosts", path="/etc/hosts")                  # the embedded default
    provider = open_dns_provider("route53", zone_name="example.com")          # AWS variables as usual
    provider = open_dns_provider("rfc2136", server="192.0.2.53", zone="example.com",
                                 key_name="qilbee", key_secret="<base64>")    # BIND, PowerDNS, Knot
    change = provider.switch("db.example.com", ["10.0.0.7"], ttl=60)          # DnsChange: old -> new
    provider.rollback(change)                                                 # the old values back, or no record
"""

from __future__ import annotations

import inspect
from typing import Any

from qilbee_backup.dns.base import DEFAULT_TTL, DnsChange, DnsError, DnsProvider, normalize_addresses, normalize_record
from qilbee_backup.dns.hosts import DEFAULT_HOSTS_PATH, HostsFileProvider
from qilbee_backup.dns.route53 import Route53Provider
from qilbee_backup.dns.rfc2136 import Rfc2136Provider
from qilbee_backup.errors import UsageError

__all__ = [
    "DEFAULT_HOSTS_PATH",
    "DEFAULT_TTL",
    "PROVIDERS",
    "DnsChange",
    "DnsError",
    "DnsProvider",
    "HostsFileProvider",
    "Rfc2136Provider",
    "Route53Provider",
    "normalize_addresses",
    "normalize_record",
    "open_dns_provider",
]

PROVIDERS: dict[str, type[DnsProvider]] = {
    HostsFileProvider.name: HostsFileProvider,
    Route53Provider.name: Route53Provider,
    Rfc2136Provider.name: Rfc2136Provider,
}


def open_dns_provider(name: str, **options: Any) -> DnsProvider:
    """The DNS provider called `name` ("hosts", "route53" or "rfc2136"), built with `options`.

    Options set to None count as not given (the provider's default), so a CLI can pass every
    flag it has. An unknown name, an option the provider does not take, or a required one
    missing is a one-line UsageError.
    """
    provider = PROVIDERS.get(name)
    if provider is None:
        raise UsageError(f"unknown DNS provider {name!r}; choose one of {', '.join(sorted(PROVIDERS))}")
    given = {key: value for key, value in options.items() if value is not None}
    parameters = inspect.signature(provider).parameters
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise UsageError(
            f"the {name} DNS provider takes no option(s) {', '.join(unknown)}; it takes {', '.join(sorted(parameters))}"
        )
    missing = sorted(key for key, p in parameters.items() if p.default is inspect.Parameter.empty and key not in given)
    if missing:
        raise UsageError(f"the {name} DNS provider needs option(s) {', '.join(missing)}")
    return provider(**given)
