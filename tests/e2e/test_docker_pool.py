"""A flow run through a `docker` work pool, on the local Docker engine.

The worker image is built from deployments/worker/Dockerfile on the local Debian base with the
project's installed site-packages in the build context (no image can be pulled here, and the
Dockerfile then installs nothing, so the build needs no network), the pool is created
from deployments/docker-pool-job-template.json, prefect.yaml's nightly-backup is deployed to it by
`prefect deploy` run inside the image, and a docker worker on the host runs one backup of an
emulator in a container: host networking, the repository and the server's data directory mounted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from qilbee_backup.repository import open_repository
from qilbee_backup import maintenance
from tests.e2e import (REPO_ROOT, prefect_env, prefect_server, run_prefect, start_worker, stop_process,
                       wait_for_final_states, wait_for_workers)

POOL = "qilbee-docker"
IMAGE = "qilbee-backup/worker"
BASE = "qilbee-backup/debian-python:bookworm"  # made by scripts/build_emulator_image.py
TEST_LABEL = {"org.qilbee-backup.test": "1"}
IMAGE_UID = 10001  # the Dockerfile's unprivileged user
APP_FILES = ("pyproject.toml", "requirements.lock", "README.md", "prefect.yaml", "qilbee_backup", "qilbee_cli", "flows", "tasks",
             "deployments")

# The first test of a session that needs the local Debian base builds it (debootstrap: minutes), and
# tests/e2e runs first.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]


def worker_site_packages() -> list[Path]:
    """What the worker needs from the project's venv: the requirements of the project and its `worker`
    extra, followed transitively with their extras (the test tools in the same venv stay out)."""
    from packaging.requirements import Requirement

    site = Path(metadata.distribution("prefect").locate_file(""))
    todo: list[tuple[str, set[str]]] = [("qilbee-backup", {"worker"})]
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    while todo:
        name, extras = todo.pop()
        for extra in extras | {""}:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for text in metadata.requires(name) or []:
                req = Requirement(text)
                if req.marker is None or req.marker.evaluate({"extra": extra}):
                    names.add(req.name)
                    todo.append((req.name, set(req.extras)))
    tops: set[str] = set()
    for name in names:
        for f in metadata.distribution(name).files or []:
            if f.parts[0] not in ("..", "bin", "__pycache__"):
                tops.add(f.parts[0])  # packages, modules and their .dist-info (entry points, versions)
    return [site / t for t in sorted(tops) if (site / t).exists()]


def stage_context(ctx: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in APP_FILES:
        src = REPO_ROOT / name
        (shutil.copytree(src, ctx / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, ctx / name))
    site = ctx / "site-packages"
    site.mkdir()
    for p in worker_site_packages():
        (shutil.copytree(p, site / p.name, ignore=ignore, symlinks=True) if p.is_dir() else shutil.copy2(p, site / p.name))


@pytest.fixture(scope="module")
def worker_image(docker_client, emulator_image) -> str:
    """The worker image, tagged by the hash of its build context so an unchanged tree is not rebuilt.
    (emulator_image makes sure the local Debian base exists.)"""
    import docker

    with tempfile.TemporaryDirectory(prefix="qilbee-worker-image-") as tmp:
        ctx = Path(tmp)
        stage_context(ctx)
        digest = hashlib.sha256()
        for f in sorted(ctx.rglob("*")):
            if f.is_file() and not f.is_symlink():
                digest.update(str(f.relative_to(ctx)).encode())
                digest.update(f.read_bytes())
        tag = f"{IMAGE}:test-{digest.hexdigest()[:12]}"
        try:
            docker_client.images.get(tag)
        except docker.errors.ImageNotFound:
            docker_client.images.build(path=str(ctx), dockerfile="deployments/worker/Dockerfile",
                                       buildargs={"BASE": BASE}, tag=tag, labels=TEST_LABEL, rm=True,
                                       network_mode="none")
    _untag_older_test_images(docker_client, keep=tag)
    return tag


def _untag_older_test_images(docker_client, keep: str) -> None:
    """Drop earlier test builds; an image a container still uses refuses (no force), and stays."""
    import docker

    for image in docker_client.images.list(name=IMAGE, filters={"label": [f"{k}={v}" for k, v in TEST_LABEL.items()]}):
        for tag in image.tags:
            if tag != keep and tag.startswith(f"{IMAGE}:test-"):
                try:
                    docker_client.images.remove(tag)
                except docker.errors.APIError:
                    pass


def test_a_backup_runs_in_a_container_of_a_docker_work_pool(postgres_server, docker_client, worker_image,
                                                            emulator_factory, tmp_path):
    server = emulator_factory(seed_nodes=150)
    stats = httpx.get(f"{server.url}/admin/stats").json()["storage"]
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.chown(repo, IMAGE_UID, IMAGE_UID)  # the image's user writes the repository
    run_label = {"org.qilbee-backup.e2e": uuid.uuid4().hex[:12]}
    database = f"prefect_docker_{run_label['org.qilbee-backup.e2e']}"

    try:
        with prefect_server(tmp_path, postgres_server.create_database(database)) as api:
            env = prefect_env(api, tmp_path / "client-home")
            run_prefect(env, "work-pool", "create", POOL, "--type", "docker",
                        "--base-job-template", str(REPO_ROOT / "deployments" / "docker-pool-job-template.json"))
            # The repository is encrypted: the flow run in its container finds the passphrase in the
            # Secret block an operator creates, never in a job variable or a parameter.
            subprocess.run([sys.executable, "-c", "import os; from prefect.blocks.system import Secret; "
                            "Secret(value=os.environ['QILBEE_PASSWORD']).save('qilbee-backup-password')"],
                           env=env, check=True, timeout=120)
            # Deployed from inside the image, as an operator would: prefect.yaml's pull step then
            # names the code's directory in the image, and the image proves it can load the flow.
            docker_client.containers.run(
                worker_image, ["prefect", "--no-prompt", "deploy", "--name", "nightly-backup", "--pool", POOL,
                               "--job-variable", f"image={worker_image}"],
                environment={"PREFECT_API_URL": api}, network_mode="host", labels={**TEST_LABEL, **run_label},
                remove=True)
            worker = start_worker(dict(env, PREFECT_WORKER_QUERY_SECONDS="1"), POOL, "docker-worker",
                                  tmp_path / "worker.log", worker_type="docker")
            try:
                wait_for_workers(api, POOL, {"docker-worker"}, [worker])
                run_id = _start_backup(api, server.url, job_variables={
                    # The template's defaults name production paths; here the repository is a temp dir
                    # and the server's data directory is mounted where the server reports it.
                    "volumes": [f"{repo}:/var/backups/qilbee", f"{server.data_dir}:{server.data_dir}:ro"],
                    "labels": {**TEST_LABEL, **run_label},
                })
                [run] = wait_for_final_states(api, [run_id])
            finally:
                stop_process(worker)
        log = (tmp_path / "worker.log").read_text()
        leftover = docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in run_label.items()]})
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in run_label.items()]}):
            container.remove(force=True)

    assert run.state.is_completed(), f"run {run.state.type.value}: {run.state.message}; worker log: {log[-3000:]}"
    assert run.labels["prefect.worker.name"] == "docker-worker" and run.labels["prefect.worker.type"] == "docker"
    assert run.infrastructure_pid, "the docker worker records the container it started"
    assert not leftover, "auto_remove (the template's default) should have removed the flow-run container"

    # The backup is on the host, written by the image's unprivileged user, with the server's own figures.
    repository = open_repository(str(repo))
    [manifest] = repository.list_backups()
    assert manifest.source.url == server.url and manifest.kind == "daily"
    assert manifest.stats["nodeCount"] == stats["nodeCount"]
    assert manifest.stats["relationshipCount"] == stats["relationshipCount"]
    assert maintenance.verify(repository, manifest.backup_id, read_data=True)["ok"]
    owners = {p.stat().st_uid for p in repo.rglob("*") if p.is_file()}
    assert owners == {IMAGE_UID}


def test_the_job_template_is_prefect_dockers_with_our_defaults():
    """The committed template still has every field of prefect-docker's own, so a newer worker reads it."""
    from prefect_docker.worker import DockerWorker

    ours = json.loads((REPO_ROOT / "deployments" / "docker-pool-job-template.json").read_text())
    theirs = DockerWorker.get_default_base_job_template()
    assert ours["job_configuration"] == theirs["job_configuration"]
    assert set(ours["variables"]["properties"]) == set(theirs["variables"]["properties"])
    defaults = {k: v.get("default") for k, v in ours["variables"]["properties"].items()}
    assert defaults["network_mode"] == "host" and defaults["image_pull_policy"] == "IfNotPresent"
    assert "/var/backups/qilbee:/var/backups/qilbee" in defaults["volumes"]  # prefect.yaml's backup_repo
    assert "qilbeedb-data:/data:ro" in defaults["volumes"]


def _start_backup(api: str, source: str, job_variables: dict):
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api) as client:
        deployment = client.read_deployment_by_name("backup/nightly-backup")
        return client.create_flow_run_from_deployment(deployment.id, parameters={"source": source},
                                                      job_variables=job_variables).id
