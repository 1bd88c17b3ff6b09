"""The provisioner interface's shared parts: the Instance record, templates, ports, health polling."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qilbee_backup.errors import UsageError
from qilbee_backup.provision import DockerProvisioner, Instance, ProcessProvisioner, open_provisioner
from qilbee_backup.provision.base import (
    NotHealthy,
    ProvisionError,
    check_timeout,
    ensure_port_free,
    free_port,
    failure_reason,
    port_answers,
    render,
    template_fields,
    url_for,
    wait_until_healthy,
)


def test_instance_round_trips_through_json():
    instance = Instance(provider="process", url="http://127.0.0.1:7000", data_dir=Path("/srv/dr/data"),
                        port=7000, pid=4242, log_path=Path("/srv/dr/data.log"))
    text = json.dumps(instance.to_dict())
    assert json.loads(text)["data_dir"] == "/srv/dr/data"
    assert Instance.from_dict(json.loads(text)) == instance

    container = Instance(provider="docker", url="http://127.0.0.1:7001", data_dir=Path("/d"), port=7001,
                         container="qilbee-dr-abc")
    assert Instance.from_dict(container.to_dict()) == container
    assert container.to_dict()["pid"] is None and container.to_dict()["log_path"] is None


def test_instance_from_a_bad_record_is_a_usage_error():
    with pytest.raises(UsageError, match="not a provisioned instance record"):
        Instance.from_dict({"provider": "process", "url": "http://x"})
    with pytest.raises(UsageError):
        Instance.from_dict({"provider": "process", "url": "u", "data_dir": "/d", "port": "not-a-port"})


def test_templates_fill_known_placeholders_and_refuse_others():
    template = ["serve", "--data-dir={data_dir}", "{data_dir}", "--port", "{port}", "--host", "{host}"]
    assert template_fields(template) == {"data_dir", "port", "host"}
    assert render(template, data_dir=Path("/a b/data"), port=7100, host="127.0.0.1") == [
        "serve", "--data-dir=/a b/data", "/a b/data", "--port", "7100", "--host", "127.0.0.1",
    ]
    assert template_fields(["qilbeedb", "{data_dir}"]) == {"data_dir"}
    with pytest.raises(UsageError, match=r"unknown placeholder \{api_key\}"):
        template_fields(["serve", "--key={api_key}"])
    with pytest.raises(UsageError, match="bad server command argument"):
        template_fields(["serve", "{port"])


def test_url_for_reaches_a_wildcard_bind_through_loopback():
    assert url_for("127.0.0.1", 7474) == "http://127.0.0.1:7474"
    assert url_for("0.0.0.0", 7474) == "http://127.0.0.1:7474"
    assert url_for("::1", 8000) == "http://[::1]:8000"


def test_check_timeout():
    assert check_timeout("health_timeout", "2.5") == 2.5
    for bad in (0, -1, "soon", None):
        with pytest.raises(UsageError, match="health_timeout"):
            check_timeout("health_timeout", bad)


def test_failure_reason_is_the_last_line_that_says_why():
    log = "starting\nerror: LOCK held by another process\nshutting down\n"
    assert failure_reason(log) == "error: LOCK held by another process"
    assert failure_reason("starting\n  loading   data  \n") == "loading data"
    assert len(failure_reason("fatal " + "y" * 5000)) == 603
    assert failure_reason("") == "it wrote nothing to its log"


def test_a_served_port_is_refused_and_a_free_one_accepted():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_answers("127.0.0.1", port)
        with pytest.raises(ProvisionError, match=f"port {port} on 127.0.0.1 is already in use"):
            ensure_port_free("127.0.0.1", port)
    ensure_port_free("127.0.0.1", free_port())
    with pytest.raises(UsageError, match="port must be 1-65535"):
        ensure_port_free("127.0.0.1", 70000)


def test_open_provisioner_by_name_with_its_options(tmp_path):
    process = open_provisioner("process", server_cmd="qilbeedb {data_dir}", log_dir=tmp_path, health_timeout=9)
    assert isinstance(process, ProcessProvisioner)
    assert process.template == ["qilbeedb", "{data_dir}"] and process.health_timeout == 9.0
    docker = open_provisioner("docker", image="example/qilbeedb:1", network="host", server_cmd=None)
    assert isinstance(docker, DockerProvisioner) and docker.network == "host"  # None options are "not given"


def test_open_provisioner_refuses_unknown_names_and_options():
    with pytest.raises(UsageError, match="unknown provider 'kubernetes'; choose one of docker, process") as caught:
        open_provisioner("kubernetes")
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="the process provider takes no option.s. image") as caught:
        open_provisioner("process", image="qilbeedb/qilbeedb:latest")
    assert "server_cmd" in str(caught.value)  # it names what the provider does take
    with pytest.raises(UsageError, match="network must be 'host' or 'bridge'"):
        open_provisioner("docker", network="overlay")


# ---------------------------------------------------------------- health polling


class _Health(BaseHTTPRequestHandler):
    """/health says "starting" for the first few requests, then "healthy"."""

    answers: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        body = json.dumps({"status": status}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_wait_until_healthy_polls_until_the_server_says_healthy(health_server):
    _Health.answers = ["starting", "starting", "healthy"]
    url = f"http://127.0.0.1:{health_server.server_address[1]}"
    body = wait_until_healthy(url, 10, exit_reason=lambda: None, interval=0.01)
    assert body == {"status": "healthy"}


def test_wait_until_healthy_gives_the_last_reason_at_the_deadline(health_server):
    _Health.answers = ["degraded"]
    url = f"http://127.0.0.1:{health_server.server_address[1]}"
    with pytest.raises(NotHealthy, match=r"not healthy within 0.3s \(last: /health answered 200 with status 'degraded'\)") as caught:
        wait_until_healthy(url, 0.3, exit_reason=lambda: None, interval=0.05)
    assert caught.value.exited is False


def test_wait_until_healthy_stops_at_once_when_the_server_exits():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    began = time.monotonic()
    with pytest.raises(NotHealthy, match="exited with code 3") as caught:
        wait_until_healthy(url, 60, exit_reason=lambda: "exited with code 3 before it was healthy")
    assert caught.value.exited is True
    assert time.monotonic() - began < 1


def test_wait_until_healthy_on_a_closed_port_names_the_refusal():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NotHealthy, match="ConnectError") as caught:
        wait_until_healthy(url, 0.3, exit_reason=lambda: None, interval=0.05)
    assert caught.value.exited is False
