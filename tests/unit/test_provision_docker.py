"""DockerProvisioner's wiring, with the Docker engine faked at the SDK boundary (the real engine is
exercised by tests/integration/test_provisioners.py)."""

from __future__ import annotations

from pathlib import Path

import docker.errors
import pytest

from qilbee_backup.errors import UsageError
from qilbee_backup.provision import DockerProvisioner, Instance, ProvisionError
from qilbee_backup.provision.docker import INSTANCE_LABEL


class FakeContainer:
    def __init__(self, name: str, labels: dict, start_error: Exception | None = None):
        self.name = name
        self.id = f"id-{name}"
        self.labels = labels
        self.status = "created"
        self.attrs = {"State": {"ExitCode": 0}}
        self.start_error = start_error
        self.calls: list[str] = []

    def start(self):
        self.calls.append("start")
        if self.start_error:
            raise self.start_error
        self.status = "running"

    def reload(self):
        pass

    def logs(self, tail):
        return b"exec: \"qilbeedb\": executable file not found\n"

    def stop(self, timeout):
        self.calls.append(f"stop({timeout})")
        self.status = "exited"

    def remove(self, force=False):
        self.calls.append("remove(force)" if force else "remove")
        self.status = "removed"


class FakeDocker:
    def __init__(self, images=(), containers=None, start_error=None):
        self._images = set(images)
        self.created: list[tuple[str, dict]] = []
        self.by_name: dict[str, FakeContainer] = dict(containers or {})
        self.start_error = start_error
        self.images = self
        self.containers = self

    # images.get / containers.get share a name: tell them apart by what is asked for.
    def get(self, key):
        if key in self.by_name:
            container = self.by_name[key]
            if container.status == "removed":
                raise docker.errors.NotFound(f"No such container: {key}")
            return container
        if key in self._images:
            return object()
        if ":" in key:
            raise docker.errors.ImageNotFound(f"No such image: {key}")
        raise docker.errors.NotFound(f"No such container: {key}")

    def create(self, image, **options):
        self.created.append((image, options))
        container = FakeContainer(options["name"], options["labels"], self.start_error)
        self.by_name[options["name"]] = container
        return container


def test_settings_are_checked():
    with pytest.raises(UsageError, match="network must be 'host' or 'bridge', got 'overlay'"):
        DockerProvisioner(network="overlay")
    with pytest.raises(UsageError, match=r"unknown placeholder \{dir\}"):
        DockerProvisioner(command=["--data-dir", "{dir}"])
    with pytest.raises(UsageError, match="health_timeout"):
        DockerProvisioner(health_timeout=-1)
    provisioner = DockerProvisioner(labels={"team": "dba"}, command="--data-dir /data --port {port}")
    assert provisioner.labels == {"team": "dba", INSTANCE_LABEL: "1"}
    assert provisioner.command == ["--data-dir", "/data", "--port", "{port}"]


def test_ports_by_network_mode():
    assert DockerProvisioner(network="bridge")._choose_port(9000) == 9000
    assert DockerProvisioner(network="bridge")._choose_port(None) != 7474
    real_image_on_host = DockerProvisioner(network="host")
    assert real_image_on_host._choose_port(None) == 7474
    with pytest.raises(UsageError, match="with host networking and no \\{port\\} in the command"):
        real_image_on_host._choose_port(9000)
    assert DockerProvisioner(network="host", command=["--port", "{port}"])._choose_port(9000) == 9000


def test_a_missing_image_is_never_pulled(tmp_path):
    fake = FakeDocker(images=())
    with pytest.raises(ProvisionError) as caught:
        DockerProvisioner(image="qilbeedb/qilbeedb:latest", docker_client=fake).start(tmp_path / "data")
    message = str(caught.value)
    assert "'qilbeedb/qilbeedb:latest' is not on this engine" in message
    assert "build it" in message and "pull it" in message and "\n" not in message
    assert fake.created == []


def test_bridge_mode_publishes_7474_on_loopback_and_cleans_up_a_failed_start(tmp_path):
    fake = FakeDocker(images={"img:1"}, start_error=docker.errors.APIError("OCI runtime create failed"))
    provisioner = DockerProvisioner(image="img:1", network="bridge", labels={"org.qilbee-backup.test": "1"},
                                    command=["--data-dir", "{data_dir}", "--host", "{host}", "--port", "{port}"],
                                    docker_client=fake)
    with pytest.raises(ProvisionError, match="QilbeeDB container qilbee-dr-.* did not start: OCI runtime create failed; "
                                             "removed it; log: exec: \"qilbeedb\": executable file not found"):
        provisioner.start(tmp_path / "data", port=7555)
    (image, options), = fake.created
    assert image == "img:1"
    assert options["name"].startswith("qilbee-dr-")
    assert options["init"] is True and options["detach"] is True
    assert options["network_mode"] == "bridge"
    assert options["ports"] == {"7474/tcp": ("127.0.0.1", 7555)}
    assert options["volumes"] == {str((tmp_path / "data").resolve()): {"bind": "/data", "mode": "rw"}}
    assert options["labels"] == {"org.qilbee-backup.test": "1", INSTANCE_LABEL: "1"}
    # Inside a bridged container the server binds every interface on 7474, where the published port leads.
    assert options["command"] == ["--data-dir", "/data", "--host", "0.0.0.0", "--port", "7474"]
    assert fake.by_name[options["name"]].calls == ["start", "remove(force)"]
    assert (tmp_path / "data").is_dir()  # created by us, not by the engine as root


def test_host_mode_fills_the_chosen_port_into_the_command(tmp_path):
    fake = FakeDocker(images={"img:1"}, start_error=docker.errors.APIError("stop here"))
    provisioner = DockerProvisioner(image="img:1", network="host", docker_client=fake,
                                    command=["--data-dir", "{data_dir}", "--host", "{host}", "--port", "{port}"])
    with pytest.raises(ProvisionError):
        provisioner.start(tmp_path / "data", port=7556, name="qilbee-drill-1")
    (_image, options), = fake.created
    assert options["name"] == "qilbee-drill-1"
    assert options["network_mode"] == "host" and "ports" not in options
    assert options["command"] == ["--data-dir", "/data", "--host", "127.0.0.1", "--port", "7556"]


def test_stop_is_idempotent_and_touches_only_our_containers(tmp_path):
    ours = FakeContainer("qilbee-dr-1", {INSTANCE_LABEL: "1"})
    ours.status = "running"
    foreign = FakeContainer("production-db", {})
    foreign.status = "running"
    fake = FakeDocker(containers={"qilbee-dr-1": ours, "production-db": foreign})
    provisioner = DockerProvisioner(docker_client=fake, stop_timeout=7)

    def instance(name):
        return Instance(provider="docker", url="http://127.0.0.1:1", data_dir=tmp_path, port=1, container=name)

    assert provisioner.is_running(instance("qilbee-dr-1"))
    provisioner.stop(instance("qilbee-dr-1"))
    assert ours.calls == ["stop(7)", "remove"]
    assert not provisioner.is_running(instance("qilbee-dr-1"))
    provisioner.stop(instance("qilbee-dr-1"))  # gone: nothing to do
    provisioner.stop(instance("never-existed"))

    with pytest.raises(ProvisionError, match="container production-db lacks the label org.qilbee-backup.instance=1"):
        provisioner.stop(instance("production-db"))
    assert foreign.calls == [] and foreign.status == "running"


def test_a_process_instance_is_not_a_docker_instance(tmp_path):
    with pytest.raises(UsageError, match="a process instance cannot be managed by the docker provisioner"):
        DockerProvisioner(docker_client=FakeDocker()).stop(
            Instance(provider="process", url="u", data_dir=Path(tmp_path), port=1, pid=1))
