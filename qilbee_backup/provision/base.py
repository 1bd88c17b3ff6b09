"""The provisioner interface: start a QilbeeDB server on a restored data directory, stop it.

Disaster recovery restores the data into a fresh host directory first, then a
provisioner starts a server on it and waits for `GET /health`. Every provider
(a local process, a Docker container) is one small class behind this interface,
and one shared test suite runs against each (tests/integration/test_provisioners.py).
"""

from __future__ import annotations

import os
import re
import socket
import string
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from qilbee_backup.errors import QilbeeBackupError, UsageError

LOOPBACK = "127.0.0.1"
QILBEEDB_PORT = 7474  # the real server's HTTP port; it cannot be changed on its command line
HEALTH_PATH = "/health"
DEFAULT_HEALTH_TIMEOUT = 120.0
DEFAULT_STOP_TIMEOUT = 15.0
PLACEHOLDERS = ("data_dir", "port", "host")


class ProvisionError(QilbeeBackupError):
    """A server could not be started (or stopped): it crashed, never got healthy, or its image is missing."""


@dataclass
class Instance:
    """A running QilbeeDB server a provisioner started; `to_dict()` is JSON-able, `from_dict()` reads it back.

    `pid` is set by the process provider, `container` (the container's name) by the docker
    provider; `log_path` is where a process writes its output.
    """

    provider: str
    url: str
    data_dir: Path
    port: int
    pid: int | None = None
    container: str | None = None
    log_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data_dir"] = str(self.data_dir)
        out["log_path"] = str(self.log_path) if self.log_path is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        """An Instance from `to_dict()` output, e.g. to stop a server after the CLI that started it exited."""
        try:
            return cls(
                provider=str(data["provider"]),
                url=str(data["url"]),
                data_dir=Path(data["data_dir"]),
                port=int(data["port"]),
                pid=int(data["pid"]) if data.get("pid") is not None else None,
                container=str(data["container"]) if data.get("container") is not None else None,
                log_path=Path(data["log_path"]) if data.get("log_path") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"not a provisioned instance record: {type(exc).__name__}: {exc}") from None


class Provisioner(ABC):
    """Starts and stops QilbeeDB servers of one kind (`name`: "process", "docker")."""

    name: ClassVar[str]
    health_timeout: float

    @abstractmethod
    def start(self, data_dir: Path, *, port: int | None = None, name: str | None = None) -> Instance:
        """Start a server on `data_dir` and wait until `GET /health` says healthy.

        `port` None picks a free 127.0.0.1 port. Raises ProvisionError (one line, with the tail
        of the server's log) when it exits or is not healthy within `health_timeout`; whatever
        was started is stopped first.
        """

    @abstractmethod
    def stop(self, instance: Instance) -> None:
        """Stop the server; a server already gone is not an error (idempotent)."""

    @abstractmethod
    def is_running(self, instance: Instance) -> bool:
        """Whether the instance's server process or container is still running."""

    def close(self) -> None:
        """Release client resources (not the servers: they outlive the provisioner)."""

    def __enter__(self) -> Provisioner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------- shared helpers


def check_timeout(label: str, value: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{label} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise UsageError(f"{label} must be more than 0 seconds, got {value!r}")
    return seconds


def template_fields(template: Sequence[str]) -> set[str]:
    """The placeholder names a command template uses; UsageError for one we do not fill."""
    used: set[str] = set()
    for arg in template:
        try:
            parsed = list(string.Formatter().parse(arg))
        except ValueError as exc:
            raise UsageError(f"bad server command argument {arg!r}: {exc}") from None
        for _text, field, _spec, _conv in parsed:
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                raise UsageError(f"unknown placeholder {{{field}}} in server command argument {arg!r}; use {known}")
            used.add(field)
    return used


def render(template: Sequence[str], **values: Any) -> list[str]:
    """The command with `{data_dir}`, `{port}` and `{host}` filled in (checked by template_fields)."""
    return [arg.format(**values) for arg in template]


def url_for(host: str, port: int) -> str:
    """The URL a client on this machine uses; a wildcard bind is reached through loopback."""
    if host in ("", "0.0.0.0", "::"):
        host = LOOPBACK
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def free_port(host: str = LOOPBACK) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    if host in ("", "0.0.0.0", "::"):
        host = LOOPBACK
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(host: str, port: int) -> None:
    """Refuse a port something already serves: its /health would pass for a server we did not start."""
    if not 0 < port < 65536:
        raise UsageError(f"port must be 1-65535, got {port}")
    if port_answers(host, port):
        raise ProvisionError(f"port {port} on {host} is already in use; choose another port or stop what serves it")


# ---------------------------------------------------------------- the environment a server gets
#
# A server never inherits this process's environment: that holds the AWS keys, the source's API
# key, the TSIG secret, Prefect's API key and URL. A local process gets only BASE_ENV (those of
# its names that are set here); a container gets only what its image sets. Anything more is the
# operator's explicit choice, on either provisioner:
#   pass_env=["NAME", ...]   copy these variables from this environment when the server starts
#                            (the way to hand over a secret: no value sits in a flow parameter)
#   env={"NAME": "value"}    set these values (they override pass_env)

BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
BASE_ENV_PREFIXES = ("LC_",)  # LC_ALL, LC_CTYPE, ...
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The `env` option checked: variable names to string values."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise UsageError(f"env must map variable names to values, got {type(env).__name__}")
    checked: dict[str, str] = {}
    for name, value in env.items():
        _check_env_name("env", name)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or "\0" in str(value):
            raise UsageError(f"env: the value of {name} must be a string without NUL characters")
        checked[name] = str(value)
    return checked


def check_pass_env(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """The `pass_env` option checked: variable names, as a list or one string ("A,B" or "A B")."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = names.replace(",", " ").split()
    if not isinstance(names, Sequence):
        raise UsageError(f"pass_env must be a list of variable names, got {type(names).__name__}")
    for name in names:
        _check_env_name("pass_env", name)
    return tuple(dict.fromkeys(names))


def _check_env_name(option: str, name: object) -> None:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise UsageError(f"{option}: {name!r} is not an environment variable name (letters, digits, _)")


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every server process may have without being asked: PATH, HOME, locale, TZ, TMPDIR."""
    environ = os.environ if environ is None else environ
    return {
        name: value for name, value in environ.items()
        if name in BASE_ENV or name.startswith(BASE_ENV_PREFIXES)
    }


def chosen_environment(pass_env: Sequence[str], env: Mapping[str, str],
                       environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The operator's variables: those named in `pass_env` that are set now, then `env`."""
    environ = os.environ if environ is None else environ
    chosen = {name: environ[name] for name in pass_env if name in environ}
    chosen.update(env)
    return chosen


# A line that says why (RocksDB's "Corruption:", "IO error: No space left", a Python exception...).
_ERROR_LINE = re.compile(r"error|fail|fatal|panic|corrupt|cannot|can't|unable|denied|no space|refus|exception|abort", re.I)


def failure_reason(log_text: str) -> str:
    """Why a server failed, from its log: the last line that reads like an error, else the last
    line, as one line; never an empty answer."""
    lines = [" ".join(line.split()) for line in log_text.splitlines() if line.strip()]
    if not lines:
        return "it wrote nothing to its log"
    reason = next((line for line in reversed(lines) if _ERROR_LINE.search(line)), lines[-1])
    return reason if len(reason) <= 600 else reason[:600] + "..."


class NotHealthy(Exception):
    """wait_until_healthy gave up: `exited` says whether the server itself went away."""

    def __init__(self, reason: str, *, exited: bool):
        super().__init__(reason)
        self.reason = reason
        self.exited = exited


def wait_until_healthy(
    url: str, timeout: float, *, exit_reason: Callable[[], str | None], interval: float = 0.2
) -> dict[str, Any]:
    """Poll `GET url/health` until it answers 200 `{"status": "healthy"}`; returns that body.

    `exit_reason()` is asked between polls and returns a sentence when the server has gone
    (exited, container stopped): a crashing server fails at once, not at the deadline.
    Raises NotHealthy with the last reason.
    """
    deadline = time.monotonic() + timeout
    reason = "no answer yet"
    with httpx.Client(timeout=min(2.0, timeout)) as http:
        while True:
            gone = exit_reason()
            if gone is not None:
                raise NotHealthy(gone, exited=True)
            try:
                response = http.get(url + HEALTH_PATH)
                body = response.json() if response.status_code == 200 else None
                if isinstance(body, dict) and body.get("status") == "healthy":
                    return body
                reason = f"{HEALTH_PATH} answered {response.status_code}" + (
                    f" with status {body.get('status')!r}" if isinstance(body, dict) else ""
                )
            except (httpx.TransportError, ValueError) as exc:
                reason = f"{HEALTH_PATH}: {type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'}"
            if time.monotonic() >= deadline:
                raise NotHealthy(f"not healthy within {timeout:g}s (last: {reason})", exited=False)
            time.sleep(interval)
