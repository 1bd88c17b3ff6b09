"""The emulator's HTTP API in-process: routes, JSON shapes, status codes, admin switch and auth."""

import pytest
from fastapi.testclient import TestClient

from qilbee_backup.emulator.app import create_app
from qilbee_backup.emulator.auth import AuthService, make_user
from qilbee_backup.emulator.store import GraphStore, open_readonly_counts

API_KEY = "qilbee_live_test_key_0123456789"


@pytest.fixture
def store(tmp_path):
    with GraphStore(tmp_path / "data") as opened:
        yield opened


def _auth(api_key=None):
    return AuthService(
        [make_user("admin", "Admin123!@#", ("admin",)), make_user("reader", "readpw", ("read",))],
        api_key=api_key,
        lockout_threshold=3,
    )


@pytest.fixture
def client(store):
    with TestClient(create_app(store, _auth())) as test_client:
        yield test_client


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["version"] == "0.1.0"
    assert isinstance(body["uptime_seconds"], int)


def test_login_token_shape_and_failures(client):
    ok = client.post("/api/v1/auth/login", json={"username": "admin", "password": "Admin123!@#"})
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "username", "user_id"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400 and body["username"] == "admin"
    assert body["access_token"].count(".") == 2
    bad = client.post("/api/v1/auth/login", json={"username": "admin", "password": "nope"})
    assert bad.status_code == 401 and "error" in bad.json()
    assert "nope" not in bad.text


def test_login_locks_the_account_after_repeated_failures(client):
    for _ in range(3):
        assert client.post("/api/v1/auth/login", json={"username": "reader", "password": "x"}).status_code == 401
    locked = client.post("/api/v1/auth/login", json={"username": "reader", "password": "readpw"})
    assert locked.status_code == 429


def test_graph_and_node_routes(client):
    first = client.post("/graphs/people")
    assert (first.status_code, first.json()) == (201, {"name": "people"})
    duplicate = client.post("/graphs/people")
    assert duplicate.status_code == 500 and "already exists" in duplicate.json()["error"]

    created = client.post("/graphs/people/nodes", json={"labels": ["Person"], "properties": {"name": "Ada"}})
    assert created.status_code == 201
    node = created.json()
    assert set(node) == {"id", "labels", "properties"} and node["properties"] == {"name": "Ada"}

    fetched = client.get(f"/graphs/people/nodes/{node['id']}")
    assert fetched.status_code == 200 and fetched.json() == node
    assert client.get("/graphs/people/nodes/999").status_code == 404
    assert client.get("/graphs/people/nodes/999").json() == {"error": "Node not found"}
    assert client.get("/graphs/people/nodes/abc").status_code == 400

    updated = client.put(f"/graphs/people/nodes/{node['id']}", json={"labels": ["Human"], "properties": {"n": 1}})
    assert updated.status_code == 200 and updated.json() == {"id": node["id"], "labels": ["Human"], "properties": {"n": 1}}
    assert client.put("/graphs/people/nodes/999", json={"labels": [], "properties": {}}).status_code == 404

    deleted = client.delete(f"/graphs/people/nodes/{node['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
    assert client.get(f"/graphs/people/nodes/{node['id']}").status_code == 404
    assert client.delete("/graphs/people").json() == {"deleted": True}


def test_graphs_are_created_on_first_use_like_the_real_server(client, store):
    assert client.post("/graphs/auto/nodes", json={"labels": [], "properties": {}}).status_code == 201
    assert "auto" in store.list_graphs()


def test_find_nodes_limit_defaults_to_100_and_count_is_after_limit(client):
    for i in range(105):
        client.post("/graphs/big/nodes", json={"labels": ["Even" if i % 2 == 0 else "Odd"], "properties": {"i": i}})
    default = client.get("/graphs/big/nodes").json()
    assert default["count"] == 100 and len(default["nodes"]) == 100
    limited = client.get("/graphs/big/nodes", params={"label": "Odd", "limit": 7}).json()
    assert limited["count"] == 7 and all(n["labels"] == ["Odd"] for n in limited["nodes"])
    assert client.get("/graphs/big/nodes", params={"label": "Nope"}).json() == {"nodes": [], "count": 0}
    assert client.get("/graphs/big/nodes", params={"limit": "-1"}).status_code == 400


def test_relationships(client):
    a = client.post("/graphs/g/nodes", json={"labels": ["P"], "properties": {}}).json()
    b = client.post("/graphs/g/nodes", json={"labels": ["P"], "properties": {}}).json()
    body = {"startNode": a["id"], "type": "KNOWS", "endNode": b["id"], "properties": {"since": 1999}}
    created = client.post("/graphs/g/relationships", json=body)
    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], **body}
    missing = client.post("/graphs/g/relationships", json={**body, "endNode": 4242})
    assert missing.status_code == 500 and "Node not found" in missing.json()["error"]
    listed = client.get(f"/graphs/g/nodes/{b['id']}/relationships")
    assert listed.status_code == 200 and listed.json() == {"relationships": [created.json()]}
    # Deleting a node detaches it.
    client.delete(f"/graphs/g/nodes/{a['id']}")
    assert client.get(f"/graphs/g/nodes/{b['id']}/relationships").json() == {"relationships": []}


def test_query_route(client):
    for name, age in [("Ada", 36), ("Alan", 41), ("Grace", 85)]:
        client.post("/graphs/q/nodes", json={"labels": ["Person"], "properties": {"name": name, "age": age}})
    response = client.post(
        "/graphs/q/query",
        json={"cypher": "MATCH (p:Person) WHERE p.age > $min RETURN p.name ORDER BY p.age DESC LIMIT 1",
              "parameters": {"min": 40}},
    )
    assert response.status_code == 200
    assert response.json()["results"] == [{"p.name": "Grace"}]
    assert "executionTimeMs" in response.json()["stats"]
    bad = client.post("/graphs/q/query", json={"cypher": "MATCH (n) DELETE n"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("Parse error:")
    missing = client.post("/graphs/q/query", json={"cypher": "MATCH (n) WHERE n.a = $x RETURN n"})
    assert missing.status_code == 500 and missing.json()["error"].startswith("Execution error:")


def test_request_body_errors_look_like_axum(client):
    assert client.post("/graphs/g/nodes", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/graphs/g/nodes", json={"labels": ["x"]}).status_code == 422
    assert client.post("/graphs/g/nodes", content=b"labels=x").status_code == 415


def test_admin_routes(client, store):
    client.post("/graphs/g/nodes", json={"labels": ["P"], "properties": {}})
    stats = client.get("/admin/stats").json()
    assert stats["storage"]["nodeCount"] == 1 and stats["storage"]["relationshipCount"] == 0
    assert stats["storage"]["totalSizeBytes"] > 0
    assert stats["graphs"] == {"g": {"nodeCount": 1, "relationshipCount": 0}}
    snap = client.post("/admin/snapshot")
    assert snap.status_code == 200
    body = snap.json()
    assert {"snapshot_id", "path", "size_bytes", "stats"} <= set(body)
    assert open_readonly_counts(body["path"]) == body["stats"]
    listed = client.get("/admin/snapshots").json()["snapshots"]
    assert [s["snapshot_id"] for s in listed] == [body["snapshot_id"]]
    assert client.get("/graphs").json() == {"graphs": ["g"]}


def test_no_admin_api_answers_404_like_an_unknown_route(store):
    with TestClient(create_app(store, _auth(), admin_api=False)) as client:
        unknown = client.get("/no/such/route")
        assert unknown.status_code == 404
        for method, path in [("POST", "/admin/snapshot"), ("GET", "/admin/snapshots"),
                             ("DELETE", "/admin/snapshots/20240115-103000"),
                             ("GET", "/admin/stats"), ("GET", "/graphs")]:
            response = client.request(method, path)
            assert (response.status_code, response.content, response.headers.get("content-type")) == (
                unknown.status_code, unknown.content, unknown.headers.get("content-type"))
        assert client.get("/health").status_code == 200


def test_delete_snapshot_route(client, store):
    first, second = (client.post("/admin/snapshot").json() for _ in range(2))
    unknown_route = client.delete("/no/such/route")

    deleted = client.delete(f"/admin/snapshots/{second['snapshot_id']}")
    assert (deleted.status_code, deleted.json()) == (200, {"snapshot_id": second["snapshot_id"], "deleted": True})
    assert not (store.data_dir / "snapshots" / second["snapshot_id"]).exists()
    assert [s["snapshot_id"] for s in client.get("/admin/snapshots").json()["snapshots"]] == [first["snapshot_id"]]

    again = client.delete(f"/admin/snapshots/{second['snapshot_id']}")  # an unknown id: axum's empty 404
    assert (again.status_code, again.content, again.headers.get("content-type")) == (
        404, unknown_route.content, unknown_route.headers.get("content-type"))
    for bad in ["latest", "%2e%2e", "x.tmp", f"{first['snapshot_id']}.tmp"]:  # not a plain snapshot name
        response = client.delete(f"/admin/snapshots/{bad}")
        assert (response.status_code, response.json()) == (400, {"error": "Invalid snapshot ID"}), bad
    # A slash, even encoded, never reaches the handler: the route takes one path segment.
    assert client.delete("/admin/snapshots/..%2f..%2fdata").status_code == 404
    assert (store.data_dir / "CURRENT").is_file() and (store.data_dir / "snapshots" / first["snapshot_id"]).is_dir()


def _bearer(client, username, password):
    token = client.post("/api/v1/auth/login", json={"username": username, "password": password}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_admin_auth_matrix(store):
    with TestClient(create_app(store, _auth(api_key=API_KEY))) as client:
        admin = _bearer(client, "admin", "Admin123!@#")
        reader = _bearer(client, "reader", "readpw")
        cases = [
            ({}, 401),
            ({"X-API-Key": "wrong"}, 401),
            ({"X-API-Key": API_KEY}, 200),
            ({"Authorization": "Bearer not.a.token"}, 401),
            ({"Authorization": "Basic YWRtaW46eA=="}, 401),
            (admin, 200),
            (reader, 403),
            # X-API-Key is checked first: a bad key fails even with a good token.
            ({**admin, "X-API-Key": "wrong"}, 401),
            ({**reader, "X-API-Key": API_KEY}, 200),
        ]
        for headers, expected in cases:
            for method, path in [("GET", "/admin/stats"), ("GET", "/admin/snapshots")]:
                response = client.request(method, path, headers=headers)
                assert response.status_code == expected, (headers.keys(), path, response.text)
                if expected != 200:
                    assert set(response.json()) == {"error", "message"}
                    assert API_KEY not in response.text
        # The graph routes stay open, as on the real server.
        assert client.get("/graphs/g/nodes").status_code == 200
        assert client.post("/admin/snapshot", headers=reader).status_code == 403
        snap = client.post("/admin/snapshot", headers={"X-API-Key": API_KEY})
        assert snap.status_code == 200
        doomed = f"/admin/snapshots/{snap.json()['snapshot_id']}"
        assert client.delete(doomed).status_code == 401
        assert client.delete(doomed, headers=reader).status_code == 403
        assert client.delete(doomed, headers=admin).status_code == 200
        # A refresh token is not an access token.
        refresh = client.post("/api/v1/auth/login", json={"username": "admin", "password": "Admin123!@#"}).json()
        assert client.get("/admin/stats", headers={"Authorization": f"Bearer {refresh['refresh_token']}"}).status_code == 401


def test_auth_repr_holds_no_secret():
    service = _auth(api_key=API_KEY)
    assert API_KEY not in repr(service) and "Admin123" not in repr(service)
    assert "readpw" not in repr(make_user("reader", "readpw", ("read",)))
