"""Secrets stay secret: a server a provisioner starts gets only the environment it needs.

The parent (a `dr`, `drill` or `restore` run) holds the AWS keys, the source's API key, the TSIG
secret and Prefect's credentials; the server it starts (a local process, maybe a shell wrapper
and its children, or a container) must hold none of them, yet still serve the restored data.
Each test sets marker values in this process's environment, starts a real server, and reads
what the server was given: /proc/<pid>/environ (of the process and every descendant) and,
for a container, its `Config.Env`. The restore check, drill and dr all start their servers
through these same provisioners."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilbee_backup.emulator.auth import API_KEY_ENV as EMULATOR_API_KEY_ENV
from qilbee_backup.emulator.store import open_readonly_counts
from tests.plugins.emulator import SEEDED_NODES
from qilbee_backup.provision import DockerProvisioner, Instance, ProcessProvisioner, Provisioner
from qilbee_backup.provision.process import PACKAGE_ROOT

pytestmark = pytest.mark.integration

HEALTHY_WITHIN = 60.0
TEST_LABELS = {"org.qilbee-backup.test": "1"}
EMULATOR_ARGS = ["--data-dir", "{data_dir}", "--host", "{host}", "--port", "{port}"]

# What a server process may get without being asked (PATH, HOME, locale, TZ, TMPDIR), plus what
# the default emulator command needs to start this interpreter and import the package.
ALLOWED = {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR"}
ALLOWED_FOR_THE_EMULATOR = ALLOWED | {"PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH"}
SHELL_SETS = {"PWD", "OLDPWD", "SHLVL", "_"}  # what sh/bash export to the commands they run


# ---------------------------------------------------------------- the parent's secrets


class Secrets:
    """Marker values in this process's environment: every one carries `token`."""

    def __init__(self, token: str):
        self.token = token
        self.values = {
            "AWS_ACCESS_KEY_ID": f"AKIA{token}",
            "AWS_SECRET_ACCESS_KEY": f"aws-secret-{token}",
            "AWS_SESSION_TOKEN": f"aws-session-{token}",
            "QILBEE_API_KEY": f"qilbee-api-key-{token}",
            "QILBEE_TSIG_SECRET": f"tsig-{token}",
            "PREFECT_API_KEY": f"pnu_{token}",
            "PREFECT_API_URL": f"https://operator:{token}@prefect.invalid/api",
            # The emulator's own --api-key default: inherited, the check server would demand a key.
            EMULATOR_API_KEY_ENV: f"emulator-key-{token}",
            "SOMETHING_ELSE_ENTIRELY": f"else-{token}",
            "QILBEE_PASSWORD": f"repository-passphrase-{token}",  # an encrypted repository's
            "QILBEE_NEW_PASSWORD": f"new-passphrase-{token}",
        }

    def assert_absent(self, where: str, raw: bytes | str) -> None:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        holding = names_holding(text, self.token)  # names only: a failure prints no environment
        assert holding == [] and self.token not in text, f"{where} holds secrets of the parent: {holding}"


def names_holding(text: str, token: str) -> list[str]:
    entries = text.split("\0") if "\0" in text else text.splitlines()
    return sorted(entry.partition("=")[0] for entry in entries if token in entry)


@pytest.fixture
def secrets_in_parent(monkeypatch) -> Secrets:
    secrets = Secrets(uuid.uuid4().hex)
    for name, value in secrets.values.items():
        monkeypatch.setenv(name, value)
    return secrets


# ---------------------------------------------------------------- what a process was given


def read_environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


def parse_environ(raw: bytes) -> dict[str, str]:
    out = {}
    for entry in raw.split(b"\0"):
        if entry:
            name, _, value = entry.decode(errors="replace").partition("=")
            out[name] = value
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children...), from /proc/<n>/stat."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def process_tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def unexpected_names(env: dict[str, str], allowed: set[str]) -> list[str]:
    return sorted(name for name in env if name not in allowed and not name.startswith("LC_"))


# ---------------------------------------------------------------- a restored database


def assert_serves(instance: Instance, data_dir: Path, headers: dict[str, str] | None = None) -> None:
    """Healthy, the restored figures, and a write that lands in the data directory."""
    expected = open_readonly_counts(data_dir)
    assert httpx.get(f"{instance.url}/health", timeout=5).json()["status"] == "healthy"
    stats = httpx.get(f"{instance.url}/admin/stats", headers=headers, timeout=5)
    assert stats.status_code == 200, stats.text
    assert stats.json()["storage"]["nodeCount"] == expected["nodeCount"] == SEEDED_NODES
    assert stats.json()["graphs"] == expected["graphs"]
    created = httpx.post(f"{instance.url}/graphs/social/nodes", timeout=5,
                         json={"labels": ["Person"], "properties": {"name": "after-restore"}})
    assert created.status_code == 201, created.text


@pytest.fixture
def started() -> Iterator[list[tuple[Provisioner, Instance, list[int]]]]:
    """What a test started: stopped at teardown; processes it saw (a wrapper's children) killed by PID."""
    runs: list[tuple[Provisioner, Instance, list[int]]] = []
    yield runs
    for provisioner, instance, seen in runs:
        try:
            provisioner.stop(instance)
        except Exception:  # noqa: BLE001 - best effort; the PIDs below follow
            pass
        for pid in seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and not is_zombie(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------- process provider


def test_the_default_emulator_gets_no_secret_and_serves(secrets_in_parent, restored_dir, started):
    provisioner = ProcessProvisioner(health_timeout=HEALTHY_WITHIN)
    instance = provisioner.start(restored_dir)
    started.append((provisioner, instance, []))
    assert instance.pid is not None

    raw = read_environ(instance.pid)
    secrets_in_parent.assert_absent(f"the emulator (pid {instance.pid})", raw)
    env = parse_environ(raw)
    assert unexpected_names(env, ALLOWED_FOR_THE_EMULATOR) == []
    assert env.get("PATH") == os.environ.get("PATH")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(PACKAGE_ROOT)  # imports from a checkout too
    assert_serves(instance, restored_dir)  # no key demanded: the parent's emulator key stayed behind


def test_a_custom_server_command_gets_no_secret_and_serves(secrets_in_parent, restored_dir, started):
    # As `--server-cmd` gives it: one string, split like a shell would.
    command = f"{shlex.quote(sys.executable)} -m qilbee_backup.emulator --data-dir {{data_dir}} --host {{host}} --port {{port}}"
    provisioner = ProcessProvisioner(server_cmd=command, health_timeout=HEALTHY_WITHIN)
    instance = provisioner.start(restored_dir)
    started.append((provisioner, instance, []))
    assert instance.pid is not None

    raw = read_environ(instance.pid)
    secrets_in_parent.assert_absent(f"the server (pid {instance.pid})", raw)
    env = parse_environ(raw)
    assert unexpected_names(env, ALLOWED) == []  # not even PYTHONPATH: only the emulator command needs it
    assert env.get("PATH") == os.environ.get("PATH")
    assert_serves(instance, restored_dir)


def test_a_shell_wrapper_and_the_server_it_forks_get_no_secret(secrets_in_parent, restored_dir, started):
    """An operator's wrapper script: the shell stays, the server is its child (no exec)."""
    script = (
        f'{shlex.quote(sys.executable)} -m qilbee_backup.emulator --data-dir "$1" --host "$2" --port "$3" &\n'
        "child=$!\n"
        "trap 'kill -TERM $child; wait $child; exit 0' TERM\n"
        "wait $child\n"
    )
    provisioner = ProcessProvisioner(server_cmd=["sh", "-c", script, "wrapper", "{data_dir}", "{host}", "{port}"],
                                     health_timeout=HEALTHY_WITHIN)
    instance = provisioner.start(restored_dir)
    assert instance.pid is not None
    tree = process_tree(instance.pid)
    started.append((provisioner, instance, tree[1:]))
    assert len(tree) >= 2, "the wrapper forked no server"

    assert unexpected_names(parse_environ(read_environ(instance.pid)), ALLOWED) == []
    for pid in tree:
        secrets_in_parent.assert_absent(f"pid {pid} of the wrapper's tree", read_environ(pid))
        # Below the shell: only what the shell itself sets for its children may be added.
        assert unexpected_names(parse_environ(read_environ(pid)), ALLOWED | SHELL_SETS) == []
    assert_serves(instance, restored_dir)

    provisioner.stop(instance)
    assert wait_gone(tree) == []


def test_variables_the_operator_names_reach_the_server_and_nothing_else(secrets_in_parent, restored_dir, started,
                                                                       monkeypatch):
    """The documented way to give a server a variable: `pass_env` (names, read from this environment
    at start, so no value sits in a flow parameter) and `env` (name -> value)."""
    key = "operator-chosen-emulator-key"
    monkeypatch.setenv(EMULATOR_API_KEY_ENV, key)
    monkeypatch.delenv("QILBEE_NOT_SET_ANYWHERE", raising=False)
    provisioner = ProcessProvisioner(pass_env=[EMULATOR_API_KEY_ENV, "QILBEE_NOT_SET_ANYWHERE"],
                                     env={"QILBEE_OPERATOR_SETTING": "on"}, health_timeout=HEALTHY_WITHIN)
    instance = provisioner.start(restored_dir)
    started.append((provisioner, instance, []))
    assert instance.pid is not None

    raw = read_environ(instance.pid)
    secrets_in_parent.assert_absent(f"the emulator (pid {instance.pid})", raw)
    env = parse_environ(raw)
    assert env[EMULATOR_API_KEY_ENV] == key
    assert env["QILBEE_OPERATOR_SETTING"] == "on"
    assert "QILBEE_NOT_SET_ANYWHERE" not in env
    assert unexpected_names(env, ALLOWED_FOR_THE_EMULATOR | {EMULATOR_API_KEY_ENV, "QILBEE_OPERATOR_SETTING"}) == []
    # The server acts on what it was given: its admin routes now demand that key.
    assert httpx.get(f"{instance.url}/admin/stats", timeout=5).status_code == 401
    assert_serves(instance, restored_dir, headers={"X-API-Key": key})


# ---------------------------------------------------------------- docker provider


def _docker_provisioner(docker_client, image: str, **options) -> DockerProvisioner:
    return DockerProvisioner(image=image, network="host", command=EMULATOR_ARGS, labels=TEST_LABELS,
                             health_timeout=HEALTHY_WITHIN, docker_client=docker_client, stop_timeout=10, **options)


def _container_env(docker_client, instance: Instance) -> list[str]:
    return docker_client.containers.get(instance.container).attrs["Config"]["Env"] or []


def _container_processes(docker_client, instance: Instance) -> list[int]:
    pid = docker_client.containers.get(instance.container).attrs["State"]["Pid"]
    assert pid, "the container has no process"
    return process_tree(pid)


@pytest.mark.docker
def test_a_container_gets_no_secret_and_serves(secrets_in_parent, docker_client, emulator_image, restored_dir,
                                               started):
    provisioner = _docker_provisioner(docker_client, emulator_image)
    instance = provisioner.start(restored_dir)
    started.append((provisioner, instance, []))

    env = _container_env(docker_client, instance)
    secrets_in_parent.assert_absent(f"container {instance.container}'s Config.Env", "\0".join(env))
    image_env = docker_client.images.get(emulator_image).attrs["Config"]["Env"] or []
    assert sorted(env) == sorted(image_env)  # nothing added: only the image's own ENV
    for pid in _container_processes(docker_client, instance):  # docker-init and the server, seen from the host
        secrets_in_parent.assert_absent(f"pid {pid} in container {instance.container}", read_environ(pid))
    assert_serves(instance, restored_dir)


@pytest.mark.docker
def test_a_container_gets_exactly_the_variables_configured(secrets_in_parent, docker_client, emulator_image,
                                                           restored_dir, started, monkeypatch):
    key = "operator-chosen-emulator-key"
    monkeypatch.setenv(EMULATOR_API_KEY_ENV, key)
    monkeypatch.delenv("QILBEE_NOT_SET_ANYWHERE", raising=False)
    provisioner = _docker_provisioner(docker_client, emulator_image,
                                      pass_env=[EMULATOR_API_KEY_ENV, "QILBEE_NOT_SET_ANYWHERE"],
                                      env={"TZ": "UTC"})
    instance = provisioner.start(restored_dir)
    started.append((provisioner, instance, []))

    env = _container_env(docker_client, instance)
    secrets_in_parent.assert_absent(f"container {instance.container}'s Config.Env", "\0".join(env))
    image_env = docker_client.images.get(emulator_image).attrs["Config"]["Env"] or []
    assert sorted(set(env) - set(image_env)) == sorted([f"{EMULATOR_API_KEY_ENV}={key}", "TZ=UTC"])
    assert httpx.get(f"{instance.url}/admin/stats", timeout=5).status_code == 401
    assert_serves(instance, restored_dir, headers={"X-API-Key": key})
