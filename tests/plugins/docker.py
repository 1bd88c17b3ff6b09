"""A real Docker engine for the tests: the emulator image built locally, containers on host networking.

docker_client (session): the engine (started by .ci/run or scripts/start-dockerd.sh); tests that
    need it are skipped only when QILBEE_SKIP_DOCKER=1 is set, otherwise a missing engine fails them.
emulator_image (session): builds scripts/build_emulator_image.py's image and returns its tag.
emulator_container: factory(data_dir, seed_nodes=0, admin_api=True) -> ContainerHandle; each container
    has --init, host networking on its own 127.0.0.1 port, the label org.qilbee-backup.test=1, and is
    removed at teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.plugins.emulator import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
LABELS = {"org.qilbee-backup.test": "1"}


@pytest.fixture(scope="session")
def docker_client():
    if os.environ.get("QILBEE_SKIP_DOCKER") == "1":
        pytest.skip("QILBEE_SKIP_DOCKER=1")
    import docker

    client = docker.from_env()
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"no Docker engine answers ({e}); start one with scripts/start-dockerd.sh")
    yield client
    client.close()


@pytest.fixture(scope="session")
def emulator_image(docker_client) -> str:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_emulator_image.py")],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"building the emulator image failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


@dataclass
class ContainerHandle:
    container: object
    name: str
    url: str
    port: int
    data_dir: Path

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.container.reload()
        raise RuntimeError(f"container {self.name} not healthy: {self.container.status}: "
                           f"{self.container.logs(tail=20).decode(errors='replace')}")


@pytest.fixture
def emulator_container(docker_client, emulator_image):
    started = []

    def start(data_dir: Path, seed_nodes: int = 0, admin_api: bool = True) -> ContainerHandle:
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        cmd = ["--data-dir", "/data", "--host", "127.0.0.1", "--port", str(port)]
        if seed_nodes:
            cmd += ["--seed-nodes", str(seed_nodes)]
        if not admin_api:
            cmd.append("--no-admin-api")
        name = f"qilbee-test-{uuid.uuid4().hex[:10]}"
        container = docker_client.containers.run(
            emulator_image, cmd, name=name, detach=True, init=True, network_mode="host", labels=LABELS,
            volumes={str(data_dir): {"bind": "/data", "mode": "rw"}},
        )
        handle = ContainerHandle(container, name, f"http://127.0.0.1:{port}", port, data_dir)
        started.append(handle)
        handle.wait_healthy()
        return handle

    yield start
    for handle in started:
        try:
            handle.container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
