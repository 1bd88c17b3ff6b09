"""Provisioners: start a QilbeeDB server on a restored data directory (disaster recovery, drills).

    provisioner = open_provisioner("process")                     # our emulator, a free 127.0.0.1 port
    provisioner = open_provisioner("process", server_cmd="qilbeedb {data_dir}")   # the real server (port 7474)
    provisioner = open_provisioner("docker", image="qilbeedb/qilbeedb:latest")    # port 7474 published on loopback
    instance = provisioner.start(data_dir)       # waits for GET /health; ProvisionError otherwise
    provisioner.stop(instance)                   # idempotent; works from a later run via Instance.from_dict
"""

from __future__ import annotations

import inspect
from typing import Any

from qilbee_backup.errors import UsageError
from qilbee_backup.provision.base import Instance, ProvisionError, Provisioner
from qilbee_backup.provision.docker import DockerProvisioner
from qilbee_backup.provision.process import ProcessProvisioner

__all__ = [
    "PROVIDERS",
    "DockerProvisioner",
    "Instance",
    "ProcessProvisioner",
    "ProvisionError",
    "Provisioner",
    "open_provisioner",
]

PROVIDERS: dict[str, type[Provisioner]] = {
    ProcessProvisioner.name: ProcessProvisioner,
    DockerProvisioner.name: DockerProvisioner,
}


def open_provisioner(name: str, **options: Any) -> Provisioner:
    """The provisioner called `name` ("process" or "docker"), built with `options`.

    Options set to None count as not given (the provider's default), so a CLI can pass every
    flag it has; an option the provider does not take, or an unknown name, is a UsageError.
    """
    provider = PROVIDERS.get(name)
    if provider is None:
        raise UsageError(f"unknown provider {name!r}; choose one of {', '.join(sorted(PROVIDERS))}")
    given = {key: value for key, value in options.items() if value is not None}
    accepted = set(inspect.signature(provider).parameters)
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise UsageError(
            f"the {name} provider takes no option(s) {', '.join(unknown)}; it takes {', '.join(sorted(accepted))}"
        )
    return provider(**given)
