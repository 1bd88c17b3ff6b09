"""The Docker engine, for offline backups, `restore --container` and the docker provisioner: one place
that turns "no engine" and "no such container" into one line a person can act on."""

from __future__ import annotations

import os
from typing import Any

from .errors import QilbeeBackupError, UsageError


class NoDockerEngine(QilbeeBackupError):
    """No Docker engine answers where the Docker SDK looks (DOCKER_HOST, else the default socket)."""


def docker_client(purpose: str) -> Any:
    """A Docker client that answers, or NoDockerEngine: '<purpose> needs the Docker engine: no socket at ...'."""
    import docker

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        socket = where.removeprefix("unix://")
        why = f"no socket at {socket}" if where.startswith("unix://") and not os.path.exists(socket) \
            else f"{where} does not answer ({' '.join(str(exc).split())[:200]})"
        raise NoDockerEngine(f"{purpose} needs the Docker engine: {why} (start dockerd, or set DOCKER_HOST)") from None


def container(client: Any, name: str) -> Any:
    """The container called name, or a one-line UsageError."""
    import docker

    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        raise UsageError(f"no Docker container named {name!r} on this Docker engine") from None
