"""One test suite for every provisioner (restic's backend-test pattern): a local process and a
Docker container (host networking, our emulator image), each started on a restored data directory.
Then what only one provider has: a process outliving the Python that started it, bridge networking,
a missing image."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from qilbee_backup.emulator.store import open_readonly_counts
from tests.plugins.emulator import SEEDED_NODES
from qilbee_backup.provision import (
    DockerProvisioner,
    Instance,
    ProcessProvisioner,
    ProvisionError,
    Provisioner,
    open_provisioner,
)
from qilbee_backup.provision.base import port_answers
from qilbee_backup.provision.process import PACKAGE_ROOT, names_data_dir, read_cmdline
from tests.plugins.emulator import free_port

pytestmark = pytest.mark.integration

TEST_LABELS = {"org.qilbee-backup.test": "1"}
# Our emulator image's arguments with host networking: the server binds the chosen port itself.
EMULATOR_ARGS = ["--data-dir", "{data_dir}", "--host", "{host}", "--port", "{port}"]
HEALTHY_WITHIN = 60.0


# ---------------------------------------------------------------- what is left behind


def processes_naming(data_dir: Path) -> list[int]:
    """PIDs of live processes whose command line names `data_dir`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmdline = read_cmdline(int(entry))
            if cmdline and names_data_dir(cmdline, data_dir.resolve()):
                pids.append(int(entry))
    return pids


@dataclass
class Provider:
    """How the shared suite drives one kind of provisioner, and how it sees what that left running."""

    kind: str
    make: Callable[..., Provisioner]  # make(**options) -> a working provisioner
    make_never_healthy: Callable[[], Provisioner]  # starts something that never answers /health
    make_crashing: Callable[[], Provisioner]  # starts something that exits at once
    crash_text: str  # what the crashing server writes to its log
    leftovers: Callable[[Path, str | None], list[str]]  # (data_dir, container name) -> what still runs
    started: list[tuple[Provisioner, Instance]] = field(default_factory=list)
    data_dirs: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _process_provider() -> Provider:
    def leftovers(data_dir: Path, _name: str | None) -> list[str]:
        return [f"pid {pid}" for pid in processes_naming(data_dir)]

    return Provider(
        kind="process",
        make=lambda **kw: ProcessProvisioner(**{"health_timeout": HEALTHY_WITHIN, **kw}),
        # The data dir and port are in the argument lists so the test finds these by /proc.
        make_never_healthy=lambda: ProcessProvisioner(
            server_cmd=[sys.executable, "-c", "import time; time.sleep(600)", "{data_dir}", "{port}"],
            health_timeout=2.0,
        ),
        make_crashing=lambda: ProcessProvisioner(
            server_cmd=[sys.executable, "-c", "import sys; sys.exit('test server: cannot open the data directory')",
                        "{data_dir}", "{port}"],
            health_timeout=HEALTHY_WITHIN,
        ),
        crash_text="test server: cannot open the data directory",
        leftovers=leftovers,
    )


def _docker_provider(docker_client, image: str) -> Provider:
    def make(**kw) -> DockerProvisioner:
        options = {"image": image, "network": "host", "command": EMULATOR_ARGS, "labels": TEST_LABELS,
                   "health_timeout": HEALTHY_WITHIN, "docker_client": docker_client, "stop_timeout": 10, **kw}
        return DockerProvisioner(**options)

    def leftovers(_data_dir: Path, name: str | None) -> list[str]:
        if name is None:
            return []
        found = docker_client.containers.list(all=True, filters={"name": f"^/{name}$"})
        return [f"container {c.name} ({c.status})" for c in found]

    return Provider(
        kind="docker",
        make=make,
        # Serves 127.0.0.2:<port> (host network: all of 127/8 is loopback), so 127.0.0.1:<port> never answers.
        make_never_healthy=lambda: make(
            command=["--data-dir", "{data_dir}", "--host", "127.0.0.2", "--port", "{port}"], health_timeout=3.0
        ),
        make_crashing=lambda: make(command=[*EMULATOR_ARGS, "--no-such-flag"]),
        crash_text="unrecognized arguments: --no-such-flag",
        leftovers=leftovers,
    )


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def provider(request) -> Iterator[Provider]:
    if request.param == "process":
        chosen = _process_provider()
    else:
        chosen = _docker_provider(request.getfixturevalue("docker_client"),
                                  request.getfixturevalue("emulator_image"))
    yield chosen
    # Whatever a test started or left behind, stopped by its own PID or container name.
    for provisioner, instance in chosen.started:
        try:
            provisioner.stop(instance)
        except Exception:  # noqa: BLE001 - best effort; the leftovers sweep follows
            pass
    for data_dir in chosen.data_dirs:
        for pid in processes_naming(data_dir):
            os.kill(pid, signal.SIGKILL)
    if chosen.kind == "docker":
        client = request.getfixturevalue("docker_client")
        for name in chosen.names:
            for container in client.containers.list(all=True, filters={"name": f"^/{name}$"}):
                container.remove(force=True)


def start(provider: Provider, provisioner: Provisioner, data_dir: Path, **kw) -> Instance:
    provider.data_dirs.append(data_dir)
    if "name" in kw:
        provider.names.append(kw["name"])
    instance = provisioner.start(data_dir, **kw)
    provider.started.append((provisioner, instance))
    if instance.container:
        provider.names.append(instance.container)
    return instance


def unique_name() -> str:
    return f"qilbee-test-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- a restored database


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message


def assert_stopped(provider: Provider, provisioner: Provisioner, instance: Instance) -> None:
    assert not provisioner.is_running(instance)
    assert not port_answers("127.0.0.1", instance.port)
    assert provider.leftovers(instance.data_dir, instance.container) == []


# ---------------------------------------------------------------- the shared suite


def test_start_serves_the_restored_database_then_stop(provider, restored_dir):
    expected = open_readonly_counts(restored_dir)
    assert expected["nodeCount"] == SEEDED_NODES
    provisioner = provider.make()
    instance = start(provider, provisioner, restored_dir)

    assert instance.provider == provider.kind == provisioner.name
    assert instance.url == f"http://127.0.0.1:{instance.port}"
    assert instance.data_dir == restored_dir.resolve()
    assert Instance.from_dict(json.loads(json.dumps(instance.to_dict()))) == instance
    assert provisioner.is_running(instance)
    assert httpx.get(f"{instance.url}/health").json()["status"] == "healthy"
    stats = httpx.get(f"{instance.url}/admin/stats").json()
    assert stats["storage"]["nodeCount"] == expected["nodeCount"]
    assert stats["storage"]["relationshipCount"] == expected["relationshipCount"]
    assert stats["graphs"] == expected["graphs"]

    # The server writes to the host directory itself (a read-write bind mount for docker).
    created = httpx.post(f"{instance.url}/graphs/social/nodes",
                         json={"labels": ["Person"], "properties": {"name": "after-restore"}})
    assert created.status_code == 201

    provisioner.stop(instance)
    assert_stopped(provider, provisioner, instance)
    provisioner.stop(instance)  # a second stop is fine
    assert_stopped(provider, provisioner, instance)
    after = open_readonly_counts(restored_dir)
    assert after["graphs"]["social"]["nodeCount"] == expected["graphs"]["social"]["nodeCount"] + 1


def test_a_server_that_never_gets_healthy_is_stopped(provider, restored_dir):
    provisioner = provider.make_never_healthy()
    name = unique_name()
    provider.data_dirs.append(restored_dir)
    provider.names.append(name)
    began = time.monotonic()
    with pytest.raises(ProvisionError) as caught:
        provisioner.start(restored_dir, name=name)
    elapsed = time.monotonic() - began
    message = str(caught.value)
    assert_one_line(message)
    assert f"not healthy within {provisioner.health_timeout:g}s" in message
    assert provisioner.health_timeout <= elapsed < provisioner.health_timeout + 20
    assert provider.leftovers(restored_dir, name) == []


def test_a_crashing_server_fails_fast_with_its_log(provider, restored_dir):
    provisioner = provider.make_crashing()
    name = unique_name()
    provider.data_dirs.append(restored_dir)
    provider.names.append(name)
    began = time.monotonic()
    with pytest.raises(ProvisionError) as caught:
        provisioner.start(restored_dir, name=name)
    # Far sooner than the health timeout: the exit is noticed, not waited out.
    assert time.monotonic() - began < 20 < provisioner.health_timeout
    message = str(caught.value)
    assert_one_line(message)
    assert "exited with code" in message
    assert provider.crash_text in message
    assert provider.leftovers(restored_dir, name) == []


def test_the_instance_outlives_its_provisioner_and_stops_by_record(provider, restored_dir):
    provisioner = provider.make()
    port, name = free_port(), unique_name()
    instance = start(provider, provisioner, restored_dir, port=port, name=name)
    assert instance.port == port and instance.url == f"http://127.0.0.1:{port}"
    if provider.kind == "docker":
        assert instance.container == name
    else:
        assert instance.log_path == restored_dir.parent / f"{name}.log"
    record = json.dumps(instance.to_dict())
    del provisioner
    gc.collect()

    assert httpx.get(f"{instance.url}/health").json()["status"] == "healthy"
    later = provider.make()  # e.g. the next CLI run, knowing only the record
    found = Instance.from_dict(json.loads(record))
    assert later.is_running(found)
    later.stop(found)
    assert_stopped(provider, later, found)
    later.stop(found)


def test_a_port_already_in_use_is_refused(provider, tmp_path):
    provisioner = provider.make()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        name = unique_name()
        provider.data_dirs.append(tmp_path / "data")
        provider.names.append(name)
        with pytest.raises(ProvisionError, match=f"port {port} on 127.0.0.1 is already in use"):
            provisioner.start(tmp_path / "data", port=port, name=name)
    assert provider.leftovers(tmp_path / "data", name) == []


def test_open_provisioner_builds_each_provider(provider):
    built = open_provisioner(provider.kind, health_timeout=5, image=None)
    assert built.name == provider.kind and built.health_timeout == 5.0


# ---------------------------------------------------------------- process only


def test_a_process_outlives_the_python_that_started_it(tmp_path, restored_dir):
    """The DR CLI exits after provisioning; the server it started must keep serving."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from qilbee_backup.provision import open_provisioner\n"
        "p = open_provisioner('process', health_timeout=60)\n"
        "print(json.dumps(p.start(Path(sys.argv[1])).to_dict()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    try:
        done = subprocess.run([sys.executable, "-c", script, str(restored_dir)], capture_output=True,
                              text=True, timeout=90, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        instance = Instance.from_dict(json.loads(done.stdout))

        assert instance.pid is not None and os.getsid(instance.pid) == instance.pid  # its own session
        assert httpx.get(f"{instance.url}/admin/stats").json()["storage"]["nodeCount"] == SEEDED_NODES
        assert instance.log_path == restored_dir.parent / "restored.log"
        assert "listening on" in instance.log_path.read_text()

        provisioner = ProcessProvisioner()
        assert provisioner.is_running(instance)
        provisioner.stop(instance)  # not its child: signalled by PID after checking /proc/<pid>/cmdline
        assert not provisioner.is_running(instance)
        assert not port_answers("127.0.0.1", instance.port)
        assert processes_naming(restored_dir) == []
    finally:
        for pid in processes_naming(restored_dir):
            os.kill(pid, signal.SIGKILL)


def test_process_log_goes_to_log_dir(tmp_path):
    provisioner = ProcessProvisioner(log_dir=tmp_path / "logs", health_timeout=HEALTHY_WITHIN)
    instance = provisioner.start(tmp_path / "db")
    try:
        assert instance.log_path == tmp_path / "logs" / "db.log"
        assert "listening on" in instance.log_path.read_text()
    finally:
        provisioner.stop(instance)
    assert processes_naming(tmp_path / "db") == []


# ---------------------------------------------------------------- docker only


@pytest.mark.docker
def test_docker_bridge_publishes_on_loopback_only(docker_client, emulator_image, restored_dir):
    """Bridge networking: the image's own command (0.0.0.0:7474 inside), published on 127.0.0.1:<port>."""
    provisioner = DockerProvisioner(image=emulator_image, network="bridge", labels=TEST_LABELS,
                                    health_timeout=HEALTHY_WITHIN, docker_client=docker_client, stop_timeout=10)
    name = unique_name()
    try:
        try:
            instance = provisioner.start(restored_dir, name=name)
        except ProvisionError as exc:
            # Published ports need the engine to program iptables/NAT; some sandboxes forbid it.
            text = str(exc).lower()
            if "iptables" in text or "external connectivity" in text or "nat" in text.split():
                pytest.skip(f"this Docker engine cannot publish ports in bridge mode: {exc}")
            raise
        container = docker_client.containers.get(name)
        assert container.attrs["HostConfig"]["NetworkMode"] == "bridge"
        bindings = container.attrs["NetworkSettings"]["Ports"]["7474/tcp"]
        assert {(b["HostIp"], int(b["HostPort"])) for b in bindings} == {("127.0.0.1", instance.port)}
        assert container.attrs["HostConfig"]["Init"] is True
        assert container.labels["org.qilbee-backup.instance"] == "1"
        assert container.labels["org.qilbee-backup.test"] == "1"
        assert httpx.get(f"{instance.url}/admin/stats").json()["storage"]["nodeCount"] == SEEDED_NODES
        provisioner.stop(instance)
        assert not provisioner.is_running(instance)
        assert docker_client.containers.list(all=True, filters={"name": f"^/{name}$"}) == []
    finally:
        for container in docker_client.containers.list(all=True, filters={"name": f"^/{name}$"}):
            container.remove(force=True)


@pytest.mark.docker
def test_docker_missing_image_says_build_or_pull(docker_client, tmp_path):
    provisioner = DockerProvisioner(image="qilbee-backup/never-built:nope", labels=TEST_LABELS,
                                    docker_client=docker_client)
    name = unique_name()
    with pytest.raises(ProvisionError) as caught:
        provisioner.start(tmp_path / "data", name=name)
    message = str(caught.value)
    assert_one_line(message)
    assert "qilbee-backup/never-built:nope" in message and "build" in message and "pull" in message
    assert docker_client.containers.list(all=True, filters={"name": f"^/{name}$"}) == []
