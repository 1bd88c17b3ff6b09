"""QilbeeClient against a scripted server (httpx.MockTransport): errors, retries, auth, stats fallback, secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest

import qilbee_backup.client as client_module
from qilbee_backup.client import (
    NODE_LIST_LIMIT,
    BadResponse,
    EndpointNotFound,
    Forbidden,
    QilbeeClient,
    ServerError,
    ServerUnreachable,
    Snapshot,
    SnapshotDeleteNotSupported,
    SnapshotNotFound,
    SnapshotNotSupported,
    StatsUnavailable,
    Unauthorized,
    UnexpectedStatus,
)
from qilbee_backup.errors import NotFound, QilbeeBackupError, UsageError

BASE = "http://127.0.0.1:7474"
API_KEY = "qilbee_live_S3CRET-api-key-0123456789"
PASSWORD = "Pa55-S3CRET-word!"
TOKEN = "eyJ.S3CRET-token.sig"
REFRESH = "S3CRET-refresh-token"

Handler = Callable[[httpx.Request], httpx.Response]


class ScriptedServer:
    """Routes `(method, path)` to a handler or to a queue of answers; records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler | list] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers) -> None:
        """Each answer is an httpx.Response, an exception to raise, or a handler; the last one repeats."""
        self.routes[(method, path)] = list(answers)

    def calls(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == path)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if answers is None:
            return httpx.Response(404, json={"error": "Not Found"})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


@pytest.fixture
def server() -> ScriptedServer:
    return ScriptedServer()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Backoff waits are recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", waited.append)
    return waited


def make_client(server: ScriptedServer, **kwargs) -> QilbeeClient:
    return QilbeeClient(BASE, transport=httpx.MockTransport(server), **kwargs)


def ok(body, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


SNAPSHOT = {"snapshot_id": "20240115-103000", "path": "/data/snapshots/20240115-103000", "size_bytes": 1024}
HEALTH = {"status": "healthy", "version": "0.1.0", "uptime_seconds": 12}


# ---------------------------------------------------------------- happy paths


def test_health_returns_the_servers_figures_without_auth(server):
    server.on("GET", "/health", ok(HEALTH))
    with make_client(server, api_key=API_KEY) as client:
        assert client.health() == HEALTH
    assert "x-api-key" not in server.requests[0].headers


def test_create_snapshot_sends_the_api_key_and_parses_the_answer(server, sleeps):
    server.on("POST", "/admin/snapshot", ok({**SNAPSHOT, "stats": {"nodeCount": 3}}))
    with make_client(server, api_key=API_KEY) as client:
        snap = client.create_snapshot()
    assert snap == Snapshot(snapshot_id="20240115-103000", path="/data/snapshots/20240115-103000",
                            size_bytes=1024, stats={"nodeCount": 3})
    assert server.requests[0].headers["x-api-key"] == API_KEY
    assert "authorization" not in server.requests[0].headers


def test_snapshot_without_stats_has_none(server):
    server.on("POST", "/admin/snapshot", ok(SNAPSHOT))
    with make_client(server) as client:
        assert client.create_snapshot().stats is None


@pytest.mark.parametrize("shape", ["wrapped", "bare"])
def test_list_snapshots_accepts_both_shapes(server, shape):
    items = [SNAPSHOT, {**SNAPSHOT, "snapshot_id": "b", "path": "/data/snapshots/b", "size_bytes": 7}]
    server.on("GET", "/admin/snapshots", ok({"snapshots": items} if shape == "wrapped" else items))
    with make_client(server) as client:
        snaps = client.list_snapshots()
    assert [s.snapshot_id for s in snaps] == ["20240115-103000", "b"]
    assert snaps[1].size_bytes == 7


def test_has_snapshot_api(server):
    with make_client(server) as client:
        assert client.has_snapshot_api() is False
        server.on("GET", "/admin/snapshots", ok({"snapshots": []}))
        assert client.has_snapshot_api() is True
    assert server.calls("POST", "/admin/snapshot") == 0


# ---------------------------------------------------------------- deleting a snapshot

DELETE_PATH = "/admin/snapshots/20240115-103000"
EMPTY_404 = httpx.Response(404)  # axum's answer to an unknown route and to an unknown id alike


def test_delete_snapshot_sends_delete_with_the_api_key(server):
    server.on("DELETE", DELETE_PATH, ok({"snapshot_id": "20240115-103000", "deleted": True}))
    with make_client(server, api_key=API_KEY) as client:
        assert client.delete_snapshot("20240115-103000") is None
    assert [(r.method, r.url.path, r.headers["x-api-key"]) for r in server.requests] == [
        ("DELETE", DELETE_PATH, API_KEY)]


def test_delete_of_an_id_the_server_does_not_list_is_snapshot_not_found(server):
    server.on("DELETE", DELETE_PATH, EMPTY_404)
    server.on("GET", "/admin/snapshots", ok({"snapshots": [{**SNAPSHOT, "snapshot_id": "other"}]}))
    with make_client(server) as client, pytest.raises(SnapshotNotFound) as caught:
        client.delete_snapshot("20240115-103000")
    assert str(caught.value) == f"QilbeeDB at {BASE} has no snapshot 20240115-103000 (404 for DELETE {DELETE_PATH})"
    assert isinstance(caught.value, NotFound) and isinstance(caught.value, EndpointNotFound)
    assert (caught.value.method, caught.value.path, caught.value.status) == ("DELETE", DELETE_PATH, 404)


@pytest.mark.parametrize(
    ("delete_answer", "listing", "message"),
    [
        (EMPTY_404, None, f"QilbeeDB at {BASE} has no snapshot API (404 for DELETE {DELETE_PATH})"),
        (EMPTY_404, ok({"snapshots": [SNAPSHOT]}),
         f"QilbeeDB at {BASE} cannot delete snapshots (404 for DELETE {DELETE_PATH})"),
        (httpx.Response(405), ok({"snapshots": [SNAPSHOT]}),
         f"QilbeeDB at {BASE} cannot delete snapshots (405 for DELETE {DELETE_PATH})"),
    ],
    ids=["no-snapshot-api", "listed-but-no-delete-route", "method-not-allowed"],
)
def test_a_server_that_cannot_delete_says_so_in_one_typed_line(server, delete_answer, listing, message):
    server.on("DELETE", DELETE_PATH, delete_answer)
    if listing is not None:
        server.on("GET", "/admin/snapshots", listing)
    with make_client(server) as client, pytest.raises(SnapshotDeleteNotSupported) as caught:
        client.delete_snapshot("20240115-103000")
    assert str(caught.value) == message and "\n" not in message
    assert not isinstance(caught.value, (SnapshotNotFound, SnapshotNotSupported))


def test_delete_snapshot_passes_other_failures_through(server, sleeps):
    server.on("DELETE", DELETE_PATH, ok({"error": "disk"}, 500))
    with make_client(server, retries=0) as client, pytest.raises(ServerError):
        client.delete_snapshot("20240115-103000")
    server.on("DELETE", DELETE_PATH, ok({"error": "nope"}, 403))
    with make_client(server) as client, pytest.raises(Forbidden):
        client.delete_snapshot("20240115-103000")


@pytest.mark.parametrize("bad", ["", ".", "..", "../data", "a/b", "latest/..", "x y", "-rf", "a\n", None])
def test_delete_snapshot_refuses_an_id_that_is_not_one_path_segment(server, bad):
    with make_client(server) as client, pytest.raises(UsageError, match="not a snapshot id"):
        client.delete_snapshot(bad)
    assert server.requests == []


def test_list_graphs_accepts_names_or_objects(server):
    server.on("GET", "/graphs", ok({"graphs": ["social", {"name": "kb"}]}))
    with make_client(server) as client:
        assert client.list_graphs() == ["social", "kb"]


def test_base_url_path_prefix_is_kept(server):
    server.on("GET", "/qilbee/health", ok(HEALTH))
    with QilbeeClient("http://127.0.0.1:7474/qilbee/", transport=httpx.MockTransport(server)) as client:
        assert client.health()["status"] == "healthy"


# ---------------------------------------------------------------- typed errors


@pytest.mark.parametrize(
    ("method", "path", "status", "kwargs", "error", "message"),
    [
        ("POST", "/admin/snapshot", 401, {"api_key": API_KEY}, Unauthorized,
         f"QilbeeDB at {BASE} refused the API key (401) for POST /admin/snapshot"),
        ("GET", "/admin/stats", 401, {}, Unauthorized,
         f"QilbeeDB at {BASE} requires authentication (401) for GET /admin/stats; "
         "give an API key or a username and password"),
        ("POST", "/admin/snapshot", 403, {"api_key": API_KEY}, Forbidden,
         f"QilbeeDB at {BASE} denied POST /admin/snapshot (403): the credentials are not an admin's"),
        ("POST", "/admin/snapshot", 404, {"api_key": API_KEY}, SnapshotNotSupported,
         f"QilbeeDB at {BASE} has no snapshot API (404 for POST /admin/snapshot); "
         "take a file-system backup instead with --mode offline --container NAME"),
        ("POST", "/admin/snapshot", 500, {}, ServerError,
         f"QilbeeDB at {BASE} failed POST /admin/snapshot with 500 Internal Server Error"),
        ("POST", "/admin/snapshot", 409, {}, UnexpectedStatus,
         f"QilbeeDB at {BASE} answered POST /admin/snapshot with 409 Conflict"),
    ],
)
def test_status_codes_become_typed_errors(server, sleeps, method, path, status, kwargs, error, message):
    server.on(method, path, ok({"error": "nope"}, status))
    with make_client(server, **kwargs) as client, pytest.raises(error) as caught:
        client.create_snapshot() if path == "/admin/snapshot" else client.stats()
    assert str(caught.value) == message
    assert (caught.value.method, caught.value.path, caught.value.status) == (method, path, status)
    assert isinstance(caught.value, QilbeeBackupError)
    assert server.calls(method, path) == 1  # never retried


def test_snapshot_not_supported_is_an_endpoint_not_found_with_its_path(server):
    with make_client(server) as client, pytest.raises(EndpointNotFound) as caught:
        client.list_snapshots()
    assert isinstance(caught.value, SnapshotNotSupported)
    assert caught.value.path == "/admin/snapshots"
    assert "--mode offline --container NAME" in str(caught.value)


def test_missing_route_is_endpoint_not_found(server):
    with make_client(server) as client, pytest.raises(EndpointNotFound) as caught:
        client.list_graphs()
    assert str(caught.value) == f"QilbeeDB at {BASE} has no GET /graphs (404)"
    assert caught.value.path == "/graphs"
    assert not isinstance(caught.value, SnapshotNotSupported)


def test_not_json_is_bad_response(server):
    server.on("GET", "/health", httpx.Response(200, text="<html>proxy</html>", headers={"content-type": "text/html"}))
    with make_client(server) as client, pytest.raises(BadResponse) as caught:
        client.health()
    assert str(caught.value) == f"QilbeeDB at {BASE} answered GET /health with 200 but not JSON (text/html)"


@pytest.mark.parametrize(
    ("method", "path", "body", "call", "problem"),
    [
        ("POST", "/admin/snapshot", {"path": "/x", "size_bytes": 1}, "create_snapshot", "snapshot_id: Field required"),
        ("POST", "/admin/snapshot", {**SNAPSHOT, "size_bytes": "big"}, "create_snapshot", "size_bytes:"),
        ("GET", "/admin/snapshots", {"items": []}, "list_snapshots", "no list of snapshots"),
        ("GET", "/health", ["healthy"], "health", "no 'status' field"),
        ("GET", "/admin/stats", {"uptime": 3}, "stats", "neither 'storage' nor 'graphs'"),
        ("GET", "/graphs", {"graphs": [{"id": 1}]}, "list_graphs", "a graph without a name"),
    ],
)
def test_wrong_shape_is_bad_response(server, method, path, body, call, problem):
    server.on(method, path, ok(body))
    with make_client(server) as client, pytest.raises(BadResponse) as caught:
        getattr(client, call)()
    message = str(caught.value)
    assert message.startswith(f"QilbeeDB at {BASE} answered {method} {path} in an unexpected shape: ")
    assert problem in message
    assert "\n" not in message


def test_connection_refused_is_server_unreachable_after_retries(server, sleeps):
    server.on("GET", "/health", httpx.ConnectError("[Errno 111] Connection refused"))
    with make_client(server, retries=2, backoff=0.1) as client, pytest.raises(ServerUnreachable) as caught:
        client.health()
    assert str(caught.value) == (
        f"QilbeeDB at {BASE} is unreachable for GET /health after 3 attempt(s): "
        "ConnectError: [Errno 111] Connection refused"
    )
    assert server.calls("GET", "/health") == 3
    assert sleeps == [0.1, 0.2]


# ---------------------------------------------------------------- retries


def test_connect_error_is_retried_then_succeeds(server, sleeps, caplog):
    server.on("GET", "/admin/stats", httpx.ConnectError("refused"), httpx.ConnectError("refused"),
              ok({"storage": {"nodeCount": 1, "relationshipCount": 0, "totalSizeBytes": 10}}))
    with caplog.at_level(logging.WARNING, logger="qilbee_backup.client"), make_client(server) as client:
        assert client.stats().node_count == 1
    assert server.calls("GET", "/admin/stats") == 3
    assert sleeps == [0.5, 1.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "GET /admin/stats attempt 1/5 failed (ConnectError: refused)" in warnings[0]
    assert "attempt 2/5" in warnings[1]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(server, sleeps, status):
    server.on("GET", "/health", ok({}, status), ok(HEALTH))
    with make_client(server) as client:
        assert client.health() == HEALTH
    assert server.calls("GET", "/health") == 2


def test_persistent_503_ends_as_server_error_after_all_attempts(server, sleeps):
    server.on("GET", "/admin/snapshots", ok({}, 503))
    with make_client(server, retries=3) as client, pytest.raises(ServerError) as caught:
        client.list_snapshots()
    assert server.calls("GET", "/admin/snapshots") == 4
    assert "503 Service Unavailable" in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 429, 500])
def test_client_errors_and_500_are_not_retried(server, sleeps, status):
    server.on("GET", "/admin/snapshots", ok({"error": "x"}, status))
    with make_client(server, api_key=API_KEY) as client, pytest.raises(QilbeeBackupError):
        client.list_snapshots()
    assert server.calls("GET", "/admin/snapshots") == 1
    assert sleeps == []


def test_backoff_doubles_and_is_capped(server, sleeps):
    server.on("GET", "/health", httpx.ReadTimeout("timed out"))
    with make_client(server, retries=6, backoff=1.0, max_backoff=4.0) as client, pytest.raises(ServerUnreachable):
        client.health()
    assert sleeps == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert server.calls("GET", "/health") == 7


def test_retry_after_is_honoured_within_the_cap(server, sleeps):
    server.on("GET", "/health", httpx.Response(503, headers={"Retry-After": "3"}),
              httpx.Response(503, headers={"Retry-After": "120"}), ok(HEALTH))
    with make_client(server, backoff=0.5, max_backoff=10.0) as client:
        client.health()
    assert sleeps == [3.0, 10.0]


def test_zero_retries_means_one_attempt(server, sleeps):
    server.on("GET", "/health", httpx.ConnectError("refused"))
    with make_client(server, retries=0) as client, pytest.raises(ServerUnreachable):
        client.health()
    assert server.calls("GET", "/health") == 1
    assert sleeps == []


def test_snapshot_post_is_retried_when_the_request_never_left(server, sleeps):
    server.on("POST", "/admin/snapshot", httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), ok(SNAPSHOT))
    with make_client(server) as client:
        assert client.create_snapshot().snapshot_id == SNAPSHOT["snapshot_id"]
    assert server.calls("POST", "/admin/snapshot") == 3


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("dropped")])
def test_snapshot_post_is_not_retried_once_sent(server, sleeps, failure):
    server.on("POST", "/admin/snapshot", failure, ok(SNAPSHOT))
    with make_client(server) as client, pytest.raises(ServerUnreachable) as caught:
        client.create_snapshot()
    assert server.calls("POST", "/admin/snapshot") == 1
    assert "not retried, since the server may have acted on it" in str(caught.value)


def test_snapshot_post_is_not_retried_on_503(server, sleeps):
    server.on("POST", "/admin/snapshot", ok({}, 503), ok(SNAPSHOT))
    with make_client(server) as client, pytest.raises(ServerError):
        client.create_snapshot()
    assert server.calls("POST", "/admin/snapshot") == 1


def test_read_timeout_on_a_get_is_retried(server, sleeps):
    server.on("GET", "/admin/snapshots", httpx.ReadTimeout("timed out"), ok([SNAPSHOT]))
    with make_client(server) as client:
        assert len(client.list_snapshots()) == 1
    assert sleeps == [0.5]


# ---------------------------------------------------------------- login


def login_handler(logins: list[dict], tokens: list[str]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        logins.append(body)
        if body != {"username": "admin", "password": PASSWORD}:
            return ok({"error": "Invalid username or password"}, 401)
        token = tokens.pop(0) if len(tokens) > 1 else tokens[0]
        return ok({"access_token": token, "token_type": "Bearer", "expires_in": 86400,
                   "refresh_token": REFRESH, "username": "admin", "user_id": "u1"})
    return handle


def bearer_required(valid: set[str], answer) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") not in {f"Bearer {t}" for t in valid}:
            return ok({"error": "Unauthorized"}, 401)
        return ok(answer)
    return handle


def test_login_happens_once_lazily_and_the_token_is_sent(server):
    logins: list[dict] = []
    server.on("POST", "/api/v1/auth/login", login_handler(logins, [TOKEN]))
    server.on("GET", "/admin/snapshots", bearer_required({TOKEN}, []))
    server.on("GET", "/health", ok(HEALTH))
    with make_client(server, username="admin", password=PASSWORD) as client:
        client.health()
        assert logins == []  # /health needs no auth: no login yet
        client.list_snapshots()
        client.list_snapshots()
    assert len(logins) == 1
    assert server.calls("GET", "/admin/snapshots") == 2


def test_a_refused_token_means_one_new_login(server):
    logins: list[dict] = []
    server.on("POST", "/api/v1/auth/login", login_handler(logins, ["old-token", TOKEN]))
    valid = {"old-token"}
    server.on("GET", "/admin/snapshots", bearer_required(valid, [SNAPSHOT]))
    with make_client(server, username="admin", password=PASSWORD) as client:
        assert len(client.list_snapshots()) == 1
        valid.clear()
        valid.add(TOKEN)  # the old token expires
        assert len(client.list_snapshots()) == 1
    assert len(logins) == 2
    assert server.calls("GET", "/admin/snapshots") == 3


def test_a_token_refused_again_after_login_is_unauthorized(server):
    logins: list[dict] = []
    server.on("POST", "/api/v1/auth/login", login_handler(logins, [TOKEN]))
    server.on("GET", "/admin/snapshots", bearer_required(set(), []))
    with make_client(server, username="admin", password=PASSWORD) as client, pytest.raises(Unauthorized) as caught:
        client.list_snapshots()
    assert len(logins) == 2
    assert str(caught.value) == (
        f"QilbeeDB at {BASE} refused the login token of user 'admin' (401) for GET /admin/snapshots"
    )


def test_a_wrong_password_is_unauthorized_naming_the_user(server):
    server.on("POST", "/api/v1/auth/login", login_handler([], [TOKEN]))
    with make_client(server, username="admin", password="wrong") as client, pytest.raises(Unauthorized) as caught:
        client.create_snapshot()
    assert str(caught.value) == (
        f"QilbeeDB at {BASE} refused the login for user 'admin' (401) for POST /api/v1/auth/login"
    )
    assert server.calls("POST", "/admin/snapshot") == 0


def test_a_locked_account_is_reported(server):
    server.on("POST", "/api/v1/auth/login", ok({"error": "locked"}, 429))
    with make_client(server, username="admin", password=PASSWORD) as client, pytest.raises(UnexpectedStatus) as caught:
        client.list_snapshots()
    assert caught.value.status == 429
    assert "locked the account 'admin'" in str(caught.value)


def test_a_login_answer_without_token_is_bad_response(server):
    server.on("POST", "/api/v1/auth/login", ok({"refresh_token": REFRESH}))
    with make_client(server, username="admin", password=PASSWORD) as client, pytest.raises(BadResponse) as caught:
        client.list_snapshots()
    assert "no access_token" in str(caught.value)
    assert REFRESH not in str(caught.value)


def test_api_key_wins_over_login(server):
    server.on("GET", "/admin/snapshots", ok([]))
    with make_client(server, api_key=API_KEY, username="admin", password=PASSWORD) as client:
        client.list_snapshots()
    assert server.calls("POST", "/api/v1/auth/login") == 0
    assert server.requests[0].headers["x-api-key"] == API_KEY


# ---------------------------------------------------------------- stats


ADMIN_STATS = {
    "storage": {"nodeCount": 5, "relationshipCount": 2, "totalSizeBytes": 4096},
    "graphs": {"social": {"nodeCount": 3, "relationshipCount": 2}, "kb": {"nodeCount": 2, "relationshipCount": 0}},
}


def test_stats_from_admin_stats(server):
    server.on("GET", "/admin/stats", ok(ADMIN_STATS))
    with make_client(server) as client:
        stats = client.stats()
    assert stats.source == "admin_stats"
    assert stats.graphs == {"social": {"nodeCount": 3, "relationshipCount": 2},
                            "kb": {"nodeCount": 2, "relationshipCount": 0}}
    assert (stats.node_count, stats.relationship_count, stats.total_size_bytes) == (5, 2, 4096)


def test_stats_from_admin_stats_without_storage_sums_the_graphs(server):
    server.on("GET", "/admin/stats", ok({"graphs": ADMIN_STATS["graphs"]}))
    with make_client(server) as client:
        stats = client.stats()
    assert (stats.node_count, stats.relationship_count, stats.total_size_bytes) == (5, 2, None)


def nodes_handler(counts: dict[str, int]) -> Handler:
    """The real server's GET /graphs/{g}/nodes: `limit` (default 100) applied before `count`."""
    def handle(request: httpx.Request) -> httpx.Response:
        graph = request.url.path.split("/")[2]
        limit = int(request.url.params.get("limit", 100))
        nodes = [{"id": i, "labels": [], "properties": {}} for i in range(min(counts[graph], limit))]
        return ok({"nodes": nodes, "count": len(nodes)})
    return handle


def test_stats_fallback_uses_get_graphs_and_lists_nodes(server):
    counts = {"social": 250, "kb": 3}
    server.on("GET", "/graphs", ok({"graphs": ["social", "kb"]}))
    for g in counts:
        server.on("POST", f"/graphs/{g}/query", ok({"error": "Parse error: count"}, 400))
        server.on("GET", f"/graphs/{g}/nodes", nodes_handler(counts))
    with make_client(server) as client:
        stats = client.stats(graphs=["ignored"])
    assert stats.source == "graph_routes"
    assert stats.graphs == {"social": {"nodeCount": 250, "relationshipCount": None},
                            "kb": {"nodeCount": 3, "relationshipCount": None}}
    assert (stats.node_count, stats.relationship_count, stats.total_size_bytes) == (253, None, None)
    assert "relationship counts" in stats.note
    listing = next(r for r in server.requests if r.url.path == "/graphs/social/nodes")
    assert listing.url.params["limit"] == str(NODE_LIST_LIMIT)


def test_stats_fallback_uses_the_callers_graph_names_when_graphs_is_missing(server):
    counts = {"social": 7}
    server.on("GET", "/graphs/social/nodes", nodes_handler(counts))
    with make_client(server) as client:
        stats = client.stats(graphs=["social"])
    assert stats.graphs == {"social": {"nodeCount": 7, "relationshipCount": None}}
    assert stats.node_count == 7


def test_stats_fallback_prefers_a_cypher_count_when_the_server_answers_one(server):
    server.on("POST", "/graphs/social/query", ok({"results": [{"count(n)": 42}], "stats": {"executionTimeMs": 1}}))
    with make_client(server) as client:
        stats = client.stats(graphs=["social"])
    assert stats.node_count == 42
    assert server.calls("GET", "/graphs/social/nodes") == 0
    query = next(r for r in server.requests if r.url.path == "/graphs/social/query")
    assert json.loads(query.content) == {"cypher": "MATCH (n) RETURN count(n)", "parameters": {}}


def test_stats_fallback_distrusts_a_query_answer_that_is_not_one_count(server):
    # A server that ignores the aggregate and returns the nodes themselves.
    server.on("POST", "/graphs/social/query", ok({"results": [{"count(n)": {"id": 1}}]}))
    server.on("GET", "/graphs/social/nodes", nodes_handler({"social": 1}))
    with make_client(server) as client:
        assert client.stats(graphs=["social"]).node_count == 1


def test_stats_fallback_without_any_graph_names_is_stats_unavailable(server):
    with make_client(server) as client, pytest.raises(StatsUnavailable) as caught:
        client.stats()
    assert isinstance(caught.value, EndpointNotFound)
    assert str(caught.value) == (
        f"QilbeeDB at {BASE} has neither GET /admin/stats nor GET /graphs (404); give the graph names to count"
    )


def test_stats_fallback_for_an_unknown_graph_names_it(server):
    with make_client(server) as client, pytest.raises(EndpointNotFound) as caught:
        client.stats(graphs=["nope"])
    assert str(caught.value) == f"QilbeeDB at {BASE} has no graph 'nope' (404 for GET /graphs/nope/nodes)"


def test_stats_does_not_fall_back_on_auth_errors(server):
    server.on("GET", "/admin/stats", ok({}, 403))
    with make_client(server, api_key=API_KEY) as client, pytest.raises(Forbidden):
        client.stats(graphs=["social"])


# ---------------------------------------------------------------- health wait


def test_wait_healthy_polls_until_healthy(server, sleeps):
    server.on("GET", "/health", httpx.ConnectError("refused"), ok({}, 503), ok(HEALTH))
    with make_client(server) as client:
        assert client.wait_healthy(timeout=30, interval=0.25) == HEALTH
    assert sleeps == [0.25, 0.25]


def test_wait_healthy_gives_up_at_the_deadline(server, sleeps):
    server.on("GET", "/health", httpx.ConnectError("[Errno 111] Connection refused"))
    with make_client(server) as client, pytest.raises(ServerUnreachable) as caught:
        client.wait_healthy(timeout=0)
    assert str(caught.value) == (
        f"QilbeeDB at {BASE} was not healthy within 0s for GET /health: ConnectError: [Errno 111] Connection refused"
    )


# ---------------------------------------------------------------- construction and secrets


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(UsageError) as caught:
        QilbeeClient(f"http://admin:{PASSWORD}@127.0.0.1:7474")
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("url", ["127.0.0.1:7474", "ftp://h", "http://"])
def test_a_url_without_http_scheme_and_host_is_a_usage_error(url):
    with pytest.raises(UsageError):
        QilbeeClient(url)


def test_a_username_without_password_is_a_usage_error():
    with pytest.raises(UsageError):
        QilbeeClient(BASE, username="admin")


def test_repr_names_the_server_and_auth_mode_only():
    with QilbeeClient(BASE, api_key=API_KEY) as a, QilbeeClient(BASE, username="admin", password=PASSWORD) as b:
        assert repr(a) == f"QilbeeClient(base_url='{BASE}', auth='api-key')"
        assert repr(b) == f"QilbeeClient(base_url='{BASE}', auth='login')"
        assert API_KEY not in repr(vars(a)) and PASSWORD not in repr(vars(b))


def test_secrets_never_reach_logs_messages_or_repr(server, sleeps, caplog):
    """Drive every path that handles a secret, failing where it can, and look for the secrets everywhere."""
    secrets = [API_KEY, PASSWORD, TOKEN, "old-token", REFRESH]
    messages: list[str] = []
    logins: list[dict] = []
    server.on("POST", "/api/v1/auth/login", httpx.ConnectError("refused"), login_handler(logins, ["old-token", TOKEN]))
    server.on("GET", "/admin/snapshots", bearer_required({"old-token"}, []))
    server.on("POST", "/admin/snapshot", ok({}, 401))
    server.on("GET", "/admin/stats", httpx.ReadTimeout("timed out"), ok({}, 503), ok({}, 401))

    def expect_failure(call):
        try:
            call()
        except QilbeeBackupError as exc:
            messages.append(str(exc))
            messages.append(repr(exc))
            if exc.__cause__ is not None:
                messages.append(str(exc.__cause__))

    with caplog.at_level(logging.DEBUG):
        with make_client(server, api_key=API_KEY) as keyed:
            messages.append(repr(keyed))
            expect_failure(keyed.create_snapshot)
            expect_failure(keyed.stats)
        with make_client(server, username="admin", password=PASSWORD) as login:
            messages.append(repr(login))
            login.list_snapshots()
            expect_failure(login.create_snapshot)  # 401 with a token: re-login, refused again
        with make_client(server, username="admin", password=PASSWORD + "x") as wrong:
            expect_failure(wrong.list_snapshots)

    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert len(messages) >= 7 and caplog.records  # the scenario really failed and logged
    for secret in secrets:
        assert secret not in logged
        for message in messages:
            assert secret not in message
    for request in server.requests:
        for secret in secrets:
            assert secret not in str(request.url)
