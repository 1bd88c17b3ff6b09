"""QilbeeClient against the real emulator process: health, snapshots, stats both ways, auth, unreachable server."""

from __future__ import annotations

import logging
import os
import socket

import httpx
import pytest

from qilbee_backup.client import (
    EndpointNotFound,
    Forbidden,
    QilbeeClient,
    ServerUnreachable,
    SnapshotNotSupported,
    Unauthorized,
)

pytestmark = pytest.mark.integration

API_KEY = "qilbee_live_INTEGRATION-S3CRET-key"
ADMIN_PASSWORD = "Adm1n-INTEGRATION-S3CRET!"
READER_PASSWORD = "Reader-INTEGRATION-S3CRET"
SECRETS = (API_KEY, ADMIN_PASSWORD, READER_PASSWORD)
FAST = {"retries": 1, "backoff": 0.05, "timeout": 10.0}


def test_health(emulator):
    with QilbeeClient(emulator.url, **FAST) as client:
        health = client.health()
    assert health["status"] == "healthy"
    assert isinstance(health["version"], str) and health["version"]
    assert isinstance(health["uptime_seconds"], int) and health["uptime_seconds"] >= 0


def test_snapshot_create_and_list(emulator):
    with QilbeeClient(emulator.url, **FAST) as client:
        assert client.has_snapshot_api() is True
        before = {s.snapshot_id for s in client.list_snapshots()}
        snap = client.create_snapshot()
        listed = {s.snapshot_id: s for s in client.list_snapshots()}
        stats = client.stats()

    assert snap.snapshot_id not in before
    assert snap.snapshot_id in listed
    assert listed[snap.snapshot_id].path == snap.path
    # The emulator runs on this machine, so the path it reports is readable here: a RocksDB checkpoint.
    assert os.path.isfile(os.path.join(snap.path, "CURRENT"))
    assert snap.size_bytes and snap.size_bytes > 0
    assert snap.stats is not None and snap.stats["nodeCount"] == stats.node_count


def test_stats_from_admin_api_and_from_graph_routes_agree(emulator_factory, tmp_path):
    data_dir = tmp_path / "db"
    with_admin = emulator_factory(data_dir=data_dir, seed_nodes=120)
    with QilbeeClient(with_admin.url, **FAST) as client:
        # A graph the seed does not make, written through the graph routes like any user would.
        for i in range(7):
            node = {"labels": ["T"], "properties": {"i": i}}
            response = httpx.post(f"{with_admin.url}/graphs/extra/nodes", json=node)
            assert response.status_code == 201
        admin_stats = client.stats()
    with_admin.stop()

    assert admin_stats.source == "admin_stats"
    assert admin_stats.graphs["extra"]["nodeCount"] == 7
    assert admin_stats.node_count == sum(g["nodeCount"] for g in admin_stats.graphs.values()) >= 127
    assert admin_stats.total_size_bytes and admin_stats.total_size_bytes > 0

    real_like = emulator_factory(data_dir=data_dir, admin_api=False)
    with QilbeeClient(real_like.url, **FAST) as client:
        assert client.has_snapshot_api() is False
        with pytest.raises(SnapshotNotSupported):
            client.create_snapshot()
        with pytest.raises(EndpointNotFound):
            client.list_graphs()
        fallback = client.stats(graphs=list(admin_stats.graphs))
        # The listing path is what a server without count() takes; check it counts the same.
        listed = {g: client._count_nodes_by_listing(g) for g in admin_stats.graphs}

    assert fallback.source == "graph_routes"
    assert {g: c["nodeCount"] for g, c in fallback.graphs.items()} == {
        g: c["nodeCount"] for g, c in admin_stats.graphs.items()
    }
    assert listed == {g: c["nodeCount"] for g, c in admin_stats.graphs.items()}
    assert fallback.node_count == admin_stats.node_count
    assert fallback.relationship_count is None and fallback.total_size_bytes is None


def test_api_key_is_required_and_checked(emulator_factory, caplog):
    server = emulator_factory(api_key=API_KEY)
    messages = []
    with caplog.at_level(logging.DEBUG):
        with QilbeeClient(server.url, **FAST) as anonymous, pytest.raises(Unauthorized) as caught:
            anonymous.create_snapshot()
        messages.append(str(caught.value))
        assert "requires authentication (401) for POST /admin/snapshot" in str(caught.value)

        with QilbeeClient(server.url, api_key=API_KEY[::-1], **FAST) as wrong, pytest.raises(Unauthorized) as caught:
            wrong.stats()
        messages.append(str(caught.value))
        assert str(caught.value) == f"QilbeeDB at {server.url} refused the API key (401) for GET /admin/stats"

        with QilbeeClient(server.url, api_key=API_KEY, **FAST) as right:
            messages.append(repr(right))
            assert right.create_snapshot().snapshot_id in {s.snapshot_id for s in right.list_snapshots()}
            assert right.stats().source == "admin_stats"

    assert caplog.records  # httpx logged the requests
    for secret in SECRETS:
        assert secret not in caplog.text
        assert all(secret not in m for m in messages)


def test_login_flow(emulator_factory, caplog):
    server = emulator_factory(
        api_key=API_KEY,  # the emulator guards its admin routes only when it has a key
        extra_args=("--admin-password", ADMIN_PASSWORD, "--user", f"reader:{READER_PASSWORD}"),
    )
    messages = []
    with caplog.at_level(logging.DEBUG):
        with QilbeeClient(server.url, username="admin", password=ADMIN_PASSWORD, **FAST) as admin:
            messages.append(repr(admin))
            snap = admin.create_snapshot()
            assert snap.snapshot_id in {s.snapshot_id for s in admin.list_snapshots()}
            # A restart signs everyone out (new token secret): the client logs in again, once.
            server.restart()
            assert admin.stats().source == "admin_stats"

        with QilbeeClient(server.url, username="reader", password=READER_PASSWORD, **FAST) as reader:
            with pytest.raises(Forbidden) as caught:
                reader.stats()
        messages.append(str(caught.value))
        assert str(caught.value) == (
            f"QilbeeDB at {server.url} denied GET /admin/stats (403): the credentials are not an admin's"
        )

        with QilbeeClient(server.url, username="admin", password=READER_PASSWORD, **FAST) as wrong:
            with pytest.raises(Unauthorized) as caught:
                wrong.list_snapshots()
        messages.append(str(caught.value))
        assert str(caught.value) == (
            f"QilbeeDB at {server.url} refused the login for user 'admin' (401) for POST /api/v1/auth/login"
        )

    logins = [r for r in caplog.records if "/api/v1/auth/login" in r.getMessage() and r.name == "httpx"]
    assert len(logins) == 4  # admin twice (first use, refused token), reader, wrong password
    for secret in SECRETS:
        assert secret not in caplog.text
        assert all(secret not in m for m in messages)


def test_unreachable_port_is_server_unreachable_after_retries(caplog):
    with socket.socket() as probe:  # a port nothing listens on: bind, read it, release it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="qilbee_backup.client"):
        with QilbeeClient(f"http://127.0.0.1:{port}", retries=2, backoff=0.01, timeout=2.0) as client:
            with pytest.raises(ServerUnreachable) as caught:
                client.health()
    message = str(caught.value)
    assert message.startswith(
        f"QilbeeDB at http://127.0.0.1:{port} is unreachable for GET /health after 3 attempt(s): "
    )
    assert "ConnectError" in message
    retries = [r.getMessage() for r in caplog.records if r.name == "qilbee_backup.client"]
    assert len(retries) == 2 and "attempt 1/3" in retries[0] and "attempt 2/3" in retries[1]
