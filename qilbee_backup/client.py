"""HTTP client for QilbeeDB: health, snapshots, statistics and graph names.

The real server (reference/QILBEEDB.md) serves `/health`, login and the graph
routes; the guide's admin routes (`/admin/snapshot`, `/admin/snapshots`,
`/admin/stats`, `GET /graphs`) and `DELETE /admin/snapshots/{id}` answer only on
servers that implement them, such as our emulator. This client uses them where
they answer and says plainly when they do not (a 404 from `/admin/snapshot` is
the real server's answer today).

Secrets (API key, password, token) travel only in headers and request bodies,
never in URLs, and never appear in a log line, an exception message or a repr.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from qilbee_backup.errors import NotFound, QilbeeBackupError, UsageError

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
LOGIN_PATH = "/api/v1/auth/login"
SNAPSHOT_PATH = "/admin/snapshot"
SNAPSHOTS_PATH = "/admin/snapshots"
STATS_PATH = "/admin/stats"
GRAPHS_PATH = "/graphs"

# Gateway and overload answers are worth another try; anything else the server meant.
RETRY_STATUSES = frozenset({502, 503, 504})
# Failures that happen before a request leaves this machine: safe to repeat any request.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# The real server's GET /graphs/{g}/nodes has no offset or paging, only `limit`
# (default 100) and `count` = number returned after the limit. The only way to
# count every node there is one request with a limit larger than any graph.
NODE_LIST_LIMIT = 2**31 - 1
COUNT_CYPHER = "MATCH (n) RETURN count(n)"

# A snapshot id goes into a URL path: one plain segment, never '.', '..' or one with a slash.
_SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def _sleep(seconds: float) -> None:
    """Indirection so tests can stub out the backoff waits."""
    time.sleep(seconds)


# ---------------------------------------------------------------- errors


class QilbeeError(QilbeeBackupError):
    """Talking to QilbeeDB failed. `.method`, `.path` and `.status` say where and how."""

    def __init__(self, message: str, *, method: str, path: str, status: int | None = None):
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status


class ServerUnreachable(QilbeeError):
    """No HTTP answer: refused connection, timeout, dropped connection (after retries)."""


class Unauthorized(QilbeeError):
    """401: credentials missing or refused."""


class Forbidden(QilbeeError):
    """403: the credentials are valid but not an admin's."""


class EndpointNotFound(QilbeeError):
    """404: the server has no such route (or no such graph)."""


class SnapshotNotSupported(EndpointNotFound):
    """404 on the snapshot API: the server cannot snapshot online; use offline mode."""


class SnapshotNotFound(EndpointNotFound, NotFound):
    """404 for `DELETE /admin/snapshots/{id}`, and the server lists no snapshot with that id."""


class SnapshotDeleteNotSupported(EndpointNotFound):
    """The server cannot delete snapshots (no snapshot API, or no DELETE route): warn, remove by hand."""


class StatsUnavailable(EndpointNotFound):
    """Neither /admin/stats nor GET /graphs answers and no graph names were given."""


class ServerError(QilbeeError):
    """5xx from the server (502/503/504 only after retries)."""


class UnexpectedStatus(QilbeeError):
    """Any other non-2xx answer, e.g. 400, 409, 429 (account locked)."""


class BadResponse(QilbeeError):
    """2xx, but the body is not JSON or not the shape the API documents."""


# ---------------------------------------------------------------- results


class Snapshot(BaseModel):
    """One server-side snapshot. `path` is as the server sees it (inside its container)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    snapshot_id: str
    path: str
    size_bytes: int | None = None
    created_at: str | None = None  # UTC, ISO 8601, when the server says
    # Present only when the server reports the database's figures with the snapshot.
    stats: dict[str, Any] | None = None


class Stats(BaseModel):
    """The database's own figures.

    `source` says where they came from: "admin_stats" (the guide's /admin/stats)
    or "graph_routes" (counted through the graph routes because /admin/stats is
    missing). In "graph_routes" mode relationship counts are unknown (None) —
    the real server's graph routes cannot count relationships — and so is
    `total_size_bytes`; `note` says so in words.
    """

    model_config = ConfigDict(frozen=True)

    graphs: dict[str, dict[str, int | None]]  # name -> {"nodeCount", "relationshipCount"}
    node_count: int
    relationship_count: int | None
    total_size_bytes: int | None
    source: Literal["admin_stats", "graph_routes"]
    note: str | None = None


class _StorageFigures(BaseModel):
    model_config = ConfigDict(extra="ignore")

    nodeCount: int | None = None
    relationshipCount: int | None = None
    totalSizeBytes: int | None = None


class _GraphFigures(BaseModel):
    model_config = ConfigDict(extra="ignore")

    nodeCount: int
    relationshipCount: int | None = None


class _AdminStats(BaseModel):
    model_config = ConfigDict(extra="ignore")

    storage: _StorageFigures | None = None
    graphs: dict[str, _GraphFigures] | None = None


def _first_problem(exc: ValidationError) -> str:
    """One line from a pydantic error, without echoing the input (it may be large)."""
    err = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in err["loc"]) or "body"
    return f"{where}: {err['msg']}"


# ---------------------------------------------------------------- client


class QilbeeClient:
    """A QilbeeDB server at `base_url`, authenticated by API key or by login.

    `retries` is how many times a transient failure (connection error, timeout,
    502/503/504) is retried after the first attempt, waiting `backoff`, 2x, 4x …
    seconds, each wait capped at `max_backoff`. 4xx answers are never retried,
    and `POST /admin/snapshot` is retried only when the request never left this
    machine, because posting it twice could take two snapshots.
    With both an API key and a username, the API key is used (the server checks it first).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        url = httpx.URL(base_url)
        if url.userinfo:
            # Not echoing the URL: its user-info part is a credential.
            raise UsageError(
                "QilbeeDB URL must not hold credentials; pass api_key, or username and password"
            )
        if url.scheme not in ("http", "https") or not url.host:
            raise UsageError(f"QilbeeDB URL must be http:// or https:// with a host, got {base_url!r}")
        if (username is None) != (password is None) and api_key is None:
            raise UsageError("QilbeeDB login needs both a username and a password")
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise UsageError("retries, backoff and max_backoff must not be negative")

        self.base_url = str(url).rstrip("/")
        self.username = username if api_key is None else None
        self._api_key = SecretStr(api_key) if api_key is not None else None
        self._password = SecretStr(password) if password is not None and api_key is None else None
        self._token: SecretStr | None = None
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> QilbeeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QilbeeClient(base_url={self.base_url!r}, auth={self.auth_mode!r})"

    @property
    def auth_mode(self) -> Literal["api-key", "login", "none"]:
        if self._api_key is not None:
            return "api-key"
        if self._password is not None:
            return "login"
        return "none"

    # -- the API

    def health(self) -> dict[str, Any]:
        """`GET /health` (no auth): `{"status", "version", "uptime_seconds"}`."""
        body = self._json(self._request("GET", HEALTH_PATH, auth=False), "GET", HEALTH_PATH)
        if not isinstance(body, dict) or "status" not in body:
            raise self._bad_shape("GET", HEALTH_PATH, "no 'status' field")
        return body

    def wait_healthy(self, timeout: float = 60.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll `/health` until it reports "healthy" (e.g. after a restart); raise ServerUnreachable at the deadline."""
        deadline = time.monotonic() + timeout
        reason = "no answer yet"
        while True:
            try:
                response = self._send_once("GET", HEALTH_PATH, auth=False)
                if response.status_code == 200:
                    body = self._json(response, "GET", HEALTH_PATH)
                    if isinstance(body, dict) and body.get("status") == "healthy":
                        return body
                    reason = f"status {body.get('status') if isinstance(body, dict) else body!r}"
                else:
                    reason = f"{response.status_code} {response.reason_phrase}"
            except (httpx.TransportError, BadResponse) as exc:
                reason = _describe(exc)
            if time.monotonic() >= deadline:
                raise ServerUnreachable(
                    f"QilbeeDB at {self.base_url} was not healthy within {timeout:g}s for GET {HEALTH_PATH}: {reason}",
                    method="GET",
                    path=HEALTH_PATH,
                )
            _sleep(interval)

    def create_snapshot(self) -> Snapshot:
        """`POST /admin/snapshot`; SnapshotNotSupported when the server has no snapshot API."""
        response = self._request("POST", SNAPSHOT_PATH, idempotent=False)
        return self._parse(Snapshot, self._json(response, "POST", SNAPSHOT_PATH), "POST", SNAPSHOT_PATH)

    def list_snapshots(self) -> list[Snapshot]:
        """`GET /admin/snapshots`: accepts `{"snapshots": [...]}` or a bare list."""
        body = self._json(self._request("GET", SNAPSHOTS_PATH), "GET", SNAPSHOTS_PATH)
        items = body.get("snapshots") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise self._bad_shape("GET", SNAPSHOTS_PATH, "no list of snapshots")
        return [self._parse(Snapshot, item, "GET", SNAPSHOTS_PATH) for item in items]

    def delete_snapshot(self, snapshot_id: str) -> None:
        """`DELETE /admin/snapshots/{id}`: remove one server-side checkpoint.

        axum answers an unknown id and a missing route alike (an empty 404), so
        the listing tells them apart: the id not listed is SnapshotNotFound; the
        id listed, or no listing at all, is SnapshotDeleteNotSupported (as is 405).
        """
        if not isinstance(snapshot_id, str) or not _SNAPSHOT_ID.fullmatch(snapshot_id):
            raise UsageError(f"not a snapshot id: {snapshot_id!r} (letters, digits, '.', '_' and '-')")
        path = f"{SNAPSHOTS_PATH}/{snapshot_id}"
        try:
            self._request("DELETE", path)
        except (EndpointNotFound, UnexpectedStatus) as exc:
            if exc.status not in (404, 405):
                raise
            raise self._not_deleted(snapshot_id, path, exc.status) from None

    def _not_deleted(self, snapshot_id: str, path: str, status: int) -> QilbeeError:
        at, kw = f"QilbeeDB at {self.base_url}", {"method": "DELETE", "path": path, "status": status}
        if status == 404:
            try:
                listed = {s.snapshot_id for s in self.list_snapshots()}
            except SnapshotNotSupported:
                return SnapshotDeleteNotSupported(f"{at} has no snapshot API (404 for DELETE {path})", **kw)
            if snapshot_id not in listed:
                return SnapshotNotFound(f"{at} has no snapshot {snapshot_id} (404 for DELETE {path})", **kw)
        return SnapshotDeleteNotSupported(f"{at} cannot delete snapshots ({status} for DELETE {path})", **kw)

    def has_snapshot_api(self) -> bool:
        """Whether the server answers the snapshot API. Probes the list route: POSTing would take a snapshot."""
        try:
            self._request("GET", SNAPSHOTS_PATH)
        except SnapshotNotSupported:
            return False
        return True

    def list_graphs(self) -> list[str]:
        """`GET /graphs` (the guide's route; the real server lacks it: EndpointNotFound)."""
        body = self._json(self._request("GET", GRAPHS_PATH), "GET", GRAPHS_PATH)
        items = body.get("graphs") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise self._bad_shape("GET", GRAPHS_PATH, "no list of graphs")
        names = []
        for item in items:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str):
                raise self._bad_shape("GET", GRAPHS_PATH, "a graph without a name")
            names.append(name)
        return names

    def stats(self, graphs: Iterable[str] | None = None) -> Stats:
        """The database's figures: `/admin/stats`, else counted through the graph routes.

        In the fallback the graph names come from `GET /graphs` if it answers,
        otherwise from `graphs` (the real server cannot list its graphs). The graph
        routes create a graph on first use, so a misspelt name in `graphs` counts
        as 0 nodes and leaves an empty graph of that name behind.
        """
        try:
            response = self._request("GET", STATS_PATH)
        except EndpointNotFound:
            return self._stats_from_graph_routes(graphs)
        body = self._parse(_AdminStats, self._json(response, "GET", STATS_PATH), "GET", STATS_PATH)
        if body.storage is None and body.graphs is None:
            raise self._bad_shape("GET", STATS_PATH, "neither 'storage' nor 'graphs'")
        per_graph = {
            name: {"nodeCount": g.nodeCount, "relationshipCount": g.relationshipCount}
            for name, g in (body.graphs or {}).items()
        }
        storage = body.storage or _StorageFigures()
        node_count = storage.nodeCount
        if node_count is None:
            node_count = sum(g["nodeCount"] for g in per_graph.values())
        rel_count = storage.relationshipCount
        if rel_count is None and per_graph and all(g["relationshipCount"] is not None for g in per_graph.values()):
            rel_count = sum(g["relationshipCount"] for g in per_graph.values())
        return Stats(
            graphs=per_graph,
            node_count=node_count,
            relationship_count=rel_count,
            total_size_bytes=storage.totalSizeBytes,
            source="admin_stats",
        )

    # -- statistics without /admin/stats

    def _stats_from_graph_routes(self, graphs: Iterable[str] | None) -> Stats:
        try:
            names = self.list_graphs()
        except EndpointNotFound:
            if graphs is None:
                raise StatsUnavailable(
                    f"QilbeeDB at {self.base_url} has neither GET {STATS_PATH} nor GET {GRAPHS_PATH} (404); "
                    "give the graph names to count",
                    method="GET",
                    path=GRAPHS_PATH,
                    status=404,
                ) from None
            names = list(graphs)
        per_graph = {name: {"nodeCount": self._count_nodes(name), "relationshipCount": None} for name in names}
        return Stats(
            graphs=per_graph,
            node_count=sum(g["nodeCount"] for g in per_graph.values()),
            relationship_count=None,
            total_size_bytes=None,
            source="graph_routes",
            note=f"counted through the graph routes: the server has no {STATS_PATH}, "
            "so relationship counts and the storage size are unknown",
        )

    def _count_nodes(self, graph: str) -> int:
        count = self._count_nodes_by_query(graph)
        return count if count is not None else self._count_nodes_by_listing(graph)

    def _count_nodes_by_query(self, graph: str) -> int | None:
        """`MATCH (n) RETURN count(n)` where the server's Cypher subset can answer it, else None.

        The real server supports only `MATCH (n:Label) WHERE … RETURN …`; an aggregate
        it cannot plan is a 400/500, and anything but one row holding one integer is
        not trusted as a count.
        """
        path = f"{GRAPHS_PATH}/{quote(graph, safe='')}/query"
        try:
            response = self._request("POST", path, json={"cypher": COUNT_CYPHER, "parameters": {}})
            body = self._json(response, "POST", path)
        except (EndpointNotFound, UnexpectedStatus, ServerError, BadResponse):
            return None
        rows = body.get("results") if isinstance(body, dict) else None
        if isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], dict) and len(rows[0]) == 1:
            (value,) = rows[0].values()
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    def _count_nodes_by_listing(self, graph: str) -> int:
        """Count via `GET /graphs/{g}/nodes`: one huge `limit`, since the real server cannot page."""
        path = f"{GRAPHS_PATH}/{quote(graph, safe='')}/nodes"
        try:
            response = self._request("GET", path, params={"limit": NODE_LIST_LIMIT})
        except EndpointNotFound as exc:
            raise EndpointNotFound(
                f"QilbeeDB at {self.base_url} has no graph {graph!r} (404 for GET {path})",
                method="GET",
                path=path,
                status=404,
            ) from exc
        body = self._json(response, "GET", path)
        nodes = body.get("nodes") if isinstance(body, dict) else None
        if not isinstance(nodes, list):
            raise self._bad_shape("GET", path, "no list of nodes")
        # `count` is len(nodes) after the limit on the real server; trust the list itself.
        return len(nodes)

    # -- transport: auth, retries, typed errors

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with auth and retries; return a 2xx response or raise a typed error."""
        if auth and self.auth_mode == "login" and self._token is None:
            self._login()
        response = self._send_with_retries(method, path, json=json, params=params, auth=auth, idempotent=idempotent)
        if response.status_code == 401 and auth and self._token is not None:
            # The token may have expired (24 h on the real server): log in again, once.
            log.info("QilbeeDB at %s refused the login token for %s %s; logging in again", self.base_url, method, path)
            self._token = None
            self._login()
            response = self._send_with_retries(
                method, path, json=json, params=params, auth=auth, idempotent=idempotent
            )
        self._raise_for_status(method, path, response)
        return response

    def _login(self) -> None:
        assert self._password is not None and self.username is not None
        body = {"username": self.username, "password": self._password.get_secret_value()}
        response = self._send_with_retries("POST", LOGIN_PATH, json=body, params=None, auth=False, idempotent=True)
        if response.status_code == 401:
            raise Unauthorized(
                f"QilbeeDB at {self.base_url} refused the login for user {self.username!r} (401) for POST {LOGIN_PATH}",
                method="POST",
                path=LOGIN_PATH,
                status=401,
            )
        if response.status_code == 429:
            raise UnexpectedStatus(
                f"QilbeeDB at {self.base_url} has locked the account {self.username!r} "
                f"(429) for POST {LOGIN_PATH}; wait for the lockout to end",
                method="POST",
                path=LOGIN_PATH,
                status=429,
            )
        self._raise_for_status("POST", LOGIN_PATH, response)
        token = self._json(response, "POST", LOGIN_PATH)
        token = token.get("access_token") if isinstance(token, dict) else None
        if not isinstance(token, str) or not token:
            # Never echo the body: it would hold the refresh token.
            raise self._bad_shape("POST", LOGIN_PATH, "no access_token")
        self._token = SecretStr(token)

    def _headers(self, auth: bool) -> dict[str, str]:
        if not auth:
            return {}
        if self._api_key is not None:
            return {"X-API-Key": self._api_key.get_secret_value()}
        if self._token is not None:
            return {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        return {}

    def _send_once(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None, auth: bool = True
    ) -> httpx.Response:
        return self._http.request(method, path, json=json, params=params, headers=self._headers(auth))

    def _send_with_retries(
        self, method: str, path: str, *, json: Any, params: dict[str, Any] | None, auth: bool, idempotent: bool
    ) -> httpx.Response:
        """The last response (maybe still 5xx), or ServerUnreachable when none came."""
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                response = self._send_once(method, path, json=json, params=params, auth=auth)
            except httpx.TransportError as exc:
                if not idempotent and not isinstance(exc, _NOT_SENT_ERRORS):
                    raise ServerUnreachable(
                        f"QilbeeDB at {self.base_url} did not answer {method} {path} ({_describe(exc)}); "
                        "not retried, since the server may have acted on it",
                        method=method,
                        path=path,
                    ) from exc
                if attempt == attempts:
                    raise ServerUnreachable(
                        f"QilbeeDB at {self.base_url} is unreachable for {method} {path} "
                        f"after {attempts} attempt(s): {_describe(exc)}",
                        method=method,
                        path=path,
                    ) from exc
                reason = _describe(exc)
            else:
                if response.status_code not in RETRY_STATUSES or not idempotent or attempt == attempts:
                    return response
                reason = f"{response.status_code} {response.reason_phrase}"
                retry_after = _retry_after_seconds(response)
                response.close()
            delay = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
            if retry_after is not None:
                delay = min(max(delay, retry_after), self._max_backoff)
            log.warning(
                "QilbeeDB at %s: %s %s attempt %d/%d failed (%s); retrying in %.2fs",
                self.base_url, method, path, attempt, attempts, reason, delay,
            )
            _sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _raise_for_status(self, method: str, path: str, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        where = f"{method} {path}"
        at = f"QilbeeDB at {self.base_url}"
        kw = {"method": method, "path": path, "status": status}
        if status == 401:
            if self._api_key is not None:
                raise Unauthorized(f"{at} refused the API key (401) for {where}", **kw)
            if self._token is not None:
                raise Unauthorized(
                    f"{at} refused the login token of user {self.username!r} (401) for {where}", **kw
                )
            raise Unauthorized(
                f"{at} requires authentication (401) for {where}; give an API key or a username and password", **kw
            )
        if status == 403:
            raise Forbidden(f"{at} denied {where} (403): the credentials are not an admin's", **kw)
        if status == 404:
            if path in (SNAPSHOT_PATH, SNAPSHOTS_PATH):
                raise SnapshotNotSupported(
                    f"{at} has no snapshot API (404 for {where}); "
                    "take a file-system backup instead with --mode offline --container NAME",
                    **kw,
                )
            raise EndpointNotFound(f"{at} has no {where} (404)", **kw)
        if status >= 500:
            raise ServerError(f"{at} failed {where} with {status} {response.reason_phrase}", **kw)
        raise UnexpectedStatus(f"{at} answered {where} with {status} {response.reason_phrase}", **kw)

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise BadResponse(
                f"QilbeeDB at {self.base_url} answered {method} {path} with {response.status_code} "
                f"but not JSON ({kind})",
                method=method,
                path=path,
                status=response.status_code,
            ) from None

    def _parse(self, model: type[BaseModel], data: Any, method: str, path: str) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise self._bad_shape(method, path, _first_problem(exc)) from None

    def _bad_shape(self, method: str, path: str, problem: str) -> BadResponse:
        return BadResponse(
            f"QilbeeDB at {self.base_url} answered {method} {path} in an unexpected shape: {problem}",
            method=method,
            path=path,
        )


def _describe(exc: BaseException) -> str:
    """One line naming the failure, e.g. 'ConnectError: [Errno 111] Connection refused'."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff
