"""Provision a QilbeeDB server as a Docker container on a restored host directory.

    DockerProvisioner()                                       # qilbeedb/qilbeedb:latest, port 7474 published
    DockerProvisioner(image="qilbee-backup/emulator:test", network="host",
                      command=["--data-dir", "/data", "--host", "127.0.0.1", "--port", "{port}"])

The restored directory is bind-mounted at `/data` (where the documented image keeps its
database), the container gets an init process (the server ignores SIGTERM, so without one
`docker stop` waits out its timeout) and the label `org.qilbee-backup.instance=1`.

Networking:
- "bridge": the container's port 7474 is published on 127.0.0.1:<port> only.
- "host": the server shares the host's network, so it must listen on the chosen port
  itself: give a `command` with `{port}`; a command without it is taken to serve 7474.

`command` (the arguments after the image's entrypoint) is a template like the process
provider's: `{port}` is the port the server listens on inside the container (the chosen
port with host networking, 7474 with bridge), `{host}` the address to bind (127.0.0.1 with
host networking, 0.0.0.0 with bridge, so the published port reaches it), `{data_dir}` is
`/data`. No image is ever pulled here: a missing one is an error saying to build or pull it.

Environment: the container gets its image's ENV and nothing of this process's environment (the
AWS keys, API keys, TSIG secret and Prefect credentials stay here). Variables are added only
explicitly: `pass_env=["NAME", ...]` copies those set here at each start, `env={"NAME": "value"}`
sets values (they win). Whatever a container is given this way is readable by anyone who can
`docker inspect` it (Config.Env).
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from qilbee_backup.docker_engine import docker_client
from qilbee_backup.errors import UsageError
from qilbee_backup.provision.base import (
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    LOOPBACK,
    QILBEEDB_PORT,
    Instance,
    NotHealthy,
    ProvisionError,
    Provisioner,
    check_env,
    check_pass_env,
    check_timeout,
    chosen_environment,
    ensure_port_free,
    free_port,
    failure_reason,
    render,
    template_fields,
    url_for,
    wait_until_healthy,
)

DEFAULT_IMAGE = "qilbeedb/qilbeedb:latest"
INSTANCE_LABEL = "org.qilbee-backup.instance"
CONTAINER_DATA_DIR = "/data"
NAME_PREFIX = "qilbee-dr-"
LOG_TAIL_LINES = 40


def parse_command(command: Sequence[str] | str | None) -> list[str] | None:
    if command is None:
        return None
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv or not all(isinstance(arg, str) for arg in argv):
        raise UsageError("the container command must be a non-empty list of strings")
    template_fields(argv)
    return argv


class DockerProvisioner(Provisioner):
    """QilbeeDB servers as Docker containers, through the Docker SDK."""

    name = "docker"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        network: Literal["host", "bridge"] = "bridge",
        command: Sequence[str] | str | None = None,
        labels: Mapping[str, str] | None = None,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        docker_client: Any = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        env: Mapping[str, str] | None = None,
        pass_env: Sequence[str] | str | None = None,
    ):
        if not isinstance(image, str) or not image:
            raise UsageError(f"image must be a Docker image reference, got {image!r}")
        if network not in ("host", "bridge"):
            raise UsageError(f"network must be 'host' or 'bridge', got {network!r}")
        self.image = image
        self.network = network
        self.command = parse_command(command)
        self.labels = {**{str(k): str(v) for k, v in (labels or {}).items()}, INSTANCE_LABEL: "1"}
        self.health_timeout = check_timeout("health_timeout", health_timeout)
        self.stop_timeout = check_timeout("stop_timeout", stop_timeout)
        self._extra_env = check_env(env)
        self._pass_env = check_pass_env(pass_env)
        self._client = docker_client
        self._own_client = False

    def __repr__(self) -> str:
        return f"DockerProvisioner(image={self.image!r}, network={self.network!r})"

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    # -- the interface

    def start(self, data_dir: Path, *, port: int | None = None, name: str | None = None) -> Instance:
        import docker.errors

        client = self._docker()
        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise ProvisionError(
                f"Docker image {self.image!r} is not on this engine; build it "
                "(scripts/build_emulator_image.py builds the emulator's) or docker pull it first"
            ) from None
        except docker.errors.DockerException as exc:
            raise ProvisionError(f"Docker engine error looking up image {self.image!r}: {_one_line(exc)}") from None

        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)  # else the engine would create it, owned by root
        port = self._choose_port(port)
        ensure_port_free(LOOPBACK, port)
        name = name or f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
        url = url_for(LOOPBACK, port)

        options: dict[str, Any] = {
            "name": name,
            "detach": True,
            "init": True,
            "labels": self.labels,
            "volumes": {str(data_dir): {"bind": CONTAINER_DATA_DIR, "mode": "rw"}},
        }
        if self.network == "host":
            options["network_mode"] = "host"
            inside_port, bind = port, LOOPBACK
        else:
            options["network_mode"] = "bridge"
            options["ports"] = {f"{QILBEEDB_PORT}/tcp": (LOOPBACK, port)}
            inside_port, bind = QILBEEDB_PORT, "0.0.0.0"
        environment = chosen_environment(self._pass_env, self._extra_env)
        if environment:  # only what was configured: the engine never sees this process's environment
            options["environment"] = environment
        if self.command is not None:
            options["command"] = render(self.command, data_dir=CONTAINER_DATA_DIR, port=inside_port, host=bind)

        try:
            container = client.containers.create(self.image, **options)
        except docker.errors.DockerException as exc:
            raise ProvisionError(f"cannot create container {name}: {_one_line(exc)}") from None
        instance = Instance(provider=self.name, url=url, data_dir=data_dir, port=port, container=name)
        try:
            container.start()
            wait_until_healthy(url, self.health_timeout, exit_reason=lambda: _exit_reason(container))
        except (NotHealthy, docker.errors.DockerException) as exc:
            reason = exc.reason if isinstance(exc, NotHealthy) else f"did not start: {_one_line(exc)}"
            tail = _logs_tail(container)
            _remove(container)
            raise ProvisionError(f"QilbeeDB container {name} for {url} {reason}; removed it; log: {tail}") from None
        except BaseException:  # interrupted while waiting: leave nothing behind
            _remove(container)
            raise
        return instance

    def stop(self, instance: Instance) -> None:
        import docker.errors

        container = self._find(instance)
        if container is None:
            return
        try:
            container.stop(timeout=int(self.stop_timeout))
            container.remove()
        except docker.errors.NotFound:
            return  # removed meanwhile (stop called twice at once)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # "removal already in progress"
                return
            raise ProvisionError(f"cannot stop container {instance.container}: {_one_line(exc)}") from None

    def is_running(self, instance: Instance) -> bool:
        container = self._find(instance)
        return container is not None and container.status == "running"

    # -- details

    def _docker(self) -> Any:
        if self._client is None:
            self._client = docker_client("the docker provider")
            self._own_client = True
        return self._client

    def _choose_port(self, port: int | None) -> int:
        serves_port_given = self.network == "bridge" or (
            self.command is not None and "port" in template_fields(self.command)
        )
        if port is None:
            return free_port(LOOPBACK) if serves_port_given else QILBEEDB_PORT
        if not serves_port_given and port != QILBEEDB_PORT:
            raise UsageError(
                f"with host networking and no {{port}} in the command the server listens on {QILBEEDB_PORT}, not {port}"
            )
        return int(port)

    def _find(self, instance: Instance) -> Any:
        """The instance's container (fresh state), None when gone; refuses one qilbee-backup did not start."""
        import docker.errors

        if instance.provider != self.name:
            raise UsageError(f"a {instance.provider} instance cannot be managed by the {self.name} provisioner")
        if instance.container is None:
            return None
        try:
            container = self._docker().containers.get(instance.container)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise ProvisionError(f"cannot inspect container {instance.container}: {_one_line(exc)}") from None
        if container.labels.get(INSTANCE_LABEL) != "1":
            raise ProvisionError(
                f"container {instance.container} lacks the label {INSTANCE_LABEL}=1; "
                "not touching a container qilbee-backup did not start"
            )
        return container


def _exit_reason(container: Any) -> str | None:
    container.reload()
    if container.status in ("exited", "dead"):
        code = container.attrs.get("State", {}).get("ExitCode")
        return f"exited with code {code} before it was healthy"
    return None


def _logs_tail(container: Any) -> str:
    try:
        return failure_reason(container.logs(tail=LOG_TAIL_LINES).decode(errors="replace"))
    except Exception:  # noqa: BLE001 - the log is a courtesy in an error message already being raised
        return "(no log)"


def _remove(container: Any) -> None:
    import docker.errors

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass


def _one_line(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    text = " ".join(str(explanation or exc).split())
    return text or type(exc).__name__
