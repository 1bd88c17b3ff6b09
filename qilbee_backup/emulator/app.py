"""The HTTP API: the real QilbeeDB server's routes plus the operations guide's admin routes.

Status codes and JSON shapes follow the real server (``{"error": …}`` bodies,
201 on create, graphs created on first use, detach-delete). Where the real
server has a stub, the emulator does the work with the same shape:
``GET /graphs/{g}/nodes/{id}/relationships`` returns the node's relationships.
Unknown routes, and the admin routes when disabled, are an empty 404 as from
the real (axum) server; so is ``DELETE /admin/snapshots/{id}`` for an unknown id.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import query as cypher
from .auth import AuthError, AuthService
from .store import (GraphExists, GraphStore, InvalidName, InvalidSnapshotId, NodeNotFound, SnapshotNotFound,
                    StoreClosed, StoreError)

SERVER_VERSION = "0.1.0"  # what the real server reports from /health
DEFAULT_NODE_LIMIT = 100
_MAX_U64 = 2**64 - 1

NodeId = Annotated[int, Field(strict=True, ge=0, le=_MAX_U64)]


class ApiError(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class NodeBody(BaseModel):
    labels: list[str]
    properties: dict[str, Any]


class RelationshipBody(BaseModel):
    startNode: NodeId
    type: str
    endNode: NodeId
    properties: dict[str, Any]


class QueryBody(BaseModel):
    cypher: str
    parameters: dict[str, Any] | None = None


class LoginBody(BaseModel):
    username: str
    password: str


def _node_id(text: str) -> int:
    if not text.isdigit() or int(text) > _MAX_U64:
        raise ApiError(400, "Invalid node ID")
    return int(text)


def create_app(
    store: GraphStore,
    auth: AuthService | None = None,
    *,
    admin_api: bool = True,
    close_store_on_shutdown: bool = False,
) -> FastAPI:
    """The ASGI app over ``store``. ``close_store_on_shutdown`` is for the server process that owns it."""
    auth = auth or AuthService(users=[])
    started = time.monotonic()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_store_on_shutdown:
            store.close()

    app = FastAPI(
        title="QilbeeDB emulator",
        version=SERVER_VERSION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error}, status_code=exc.status)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> Response:
        if isinstance(exc, InvalidName):
            return JSONResponse({"error": str(exc)}, status_code=400)
        if isinstance(exc, InvalidSnapshotId):
            return JSONResponse({"error": "Invalid snapshot ID"}, status_code=400)
        if isinstance(exc, SnapshotNotFound):
            return Response(status_code=404)  # empty, as axum answers a missing resource
        if isinstance(exc, StoreClosed):
            return JSONResponse({"error": "Server is shutting down"}, status_code=503)
        return JSONResponse({"error": str(exc)}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _no_route(_: Request, exc: StarletteHTTPException) -> Response:
        # axum answers an unmatched route or method with an empty body.
        return Response(status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> PlainTextResponse:
        # axum's Json extractor: 415 without a JSON content type, 400 for bad JSON, 422 for a wrong shape.
        if "json" not in request.headers.get("content-type", ""):
            return PlainTextResponse("Expected request with `Content-Type: application/json`", status_code=415)
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "body"
        if first.get("type") == "json_invalid":
            return PlainTextResponse(f"Failed to parse the request body as JSON: {first.get('msg')}", 400)
        return PlainTextResponse(
            f"Failed to deserialize the JSON body into the target type: {where}: {first.get('msg')}", 422
        )

    # -- health and login

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "healthy", "version": SERVER_VERSION, "uptime_seconds": int(time.monotonic() - started)}

    @app.post("/api/v1/auth/login")
    def login(body: LoginBody) -> dict[str, Any]:
        return auth.login(body.username, body.password)

    # -- graphs

    @app.post("/graphs/{name}", status_code=201)
    def create_graph(name: str) -> dict[str, Any]:
        try:
            store.create_graph(name)
        except GraphExists as exc:
            raise ApiError(500, f"Invalid graph operation: {exc}") from None
        return {"name": name}

    @app.delete("/graphs/{name}")
    def delete_graph(name: str) -> dict[str, Any]:
        store.delete_graph(name)  # the real server answers the same whether it existed or not
        return {"deleted": True}

    # -- nodes

    @app.post("/graphs/{graph}/nodes", status_code=201)
    def create_node(graph: str, body: NodeBody) -> dict[str, Any]:
        return store.create_node(graph, body.labels, body.properties)

    @app.get("/graphs/{graph}/nodes")
    def find_nodes(graph: str, label: str | None = None, limit: str | None = None) -> Response:
        if limit is not None and not limit.isdigit():
            return PlainTextResponse("Failed to deserialize query string: invalid digit found in string", 400)
        store.ensure_graph(graph)
        wanted = DEFAULT_NODE_LIMIT if limit is None else int(limit)
        nodes = []
        for node in store.iter_nodes(graph, label):
            if len(nodes) >= wanted:
                break
            nodes.append(node)
        return JSONResponse({"nodes": nodes, "count": len(nodes)})

    @app.get("/graphs/{graph}/nodes/{node_id}")
    def get_node(graph: str, node_id: str) -> dict[str, Any]:
        store.ensure_graph(graph)
        node = store.get_node(graph, _node_id(node_id))
        if node is None:
            raise ApiError(404, "Node not found")
        return node

    @app.put("/graphs/{graph}/nodes/{node_id}")
    def update_node(graph: str, node_id: str, body: NodeBody) -> dict[str, Any]:
        store.ensure_graph(graph)
        node = store.update_node(graph, _node_id(node_id), body.labels, body.properties)
        if node is None:
            raise ApiError(404, "Node not found")
        return node

    @app.delete("/graphs/{graph}/nodes/{node_id}")
    def delete_node(graph: str, node_id: str) -> dict[str, Any]:
        store.ensure_graph(graph)
        store.delete_node(graph, _node_id(node_id))  # detach-delete; absent nodes answer the same
        return {"deleted": True}

    # -- relationships

    @app.post("/graphs/{graph}/relationships", status_code=201)
    def create_relationship(graph: str, body: RelationshipBody) -> dict[str, Any]:
        try:
            return store.create_relationship(graph, body.startNode, body.type, body.endNode, body.properties)
        except NodeNotFound as exc:
            raise ApiError(500, str(exc)) from None

    @app.get("/graphs/{graph}/nodes/{node_id}/relationships")
    def node_relationships(graph: str, node_id: str) -> dict[str, Any]:
        store.ensure_graph(graph)
        return {"relationships": store.node_relationships(graph, _node_id(node_id))}

    # -- query

    @app.post("/graphs/{graph}/query")
    def run_query(graph: str, body: QueryBody) -> dict[str, Any]:
        store.ensure_graph(graph)
        try:
            parsed = cypher.parse(body.cypher)
        except cypher.QueryError as exc:
            raise ApiError(400, f"Parse error: {exc}") from None
        try:
            result = cypher.execute(parsed, body.parameters or {}, lambda label: store.iter_nodes(graph, label))
        except cypher.QueryError as exc:
            raise ApiError(500, f"Execution error: {exc}") from None
        return result.document()

    if admin_api:
        _add_admin_routes(app, store, auth)
    return app


def _add_admin_routes(app: FastAPI, store: GraphStore, auth: AuthService) -> None:
    """The operations guide's routes; with ``--no-admin-api`` they do not exist (the real server today)."""

    def admin(request: Request) -> None:
        auth.require_admin(request.headers)

    guarded = [Depends(admin)]

    @app.post("/admin/snapshot", dependencies=guarded)
    def snapshot() -> dict[str, Any]:
        return store.create_snapshot()

    @app.get("/admin/snapshots", dependencies=guarded)
    def snapshots() -> dict[str, Any]:
        return {"snapshots": store.list_snapshots()}

    @app.delete("/admin/snapshots/{snapshot_id}", dependencies=guarded)
    def delete_snapshot(snapshot_id: str) -> dict[str, Any]:
        store.delete_snapshot(snapshot_id)
        return {"snapshot_id": snapshot_id, "deleted": True}

    @app.get("/admin/stats", dependencies=guarded)
    def stats() -> dict[str, Any]:
        return store.storage_stats()

    @app.get("/graphs")
    def list_graphs() -> dict[str, Any]:
        return {"graphs": store.list_graphs()}
