"""Transient S3 faults for the tests: an HTTP proxy on 127.0.0.1 in front of moto_server.

s3_fault_proxy: a FaultProxy forwarding every request to the session's moto_server; point a
    client at ``proxy.url`` (AWS_ENDPOINT_URL_S3, or S3Options.endpoint_url). Then
    ``proxy.fail(match, times=1, how="503")`` makes the next ``times`` GET requests whose path
    contains ``match`` fail: "503" answers S3's SlowDown error without asking moto, "drop" sends
    moto's status and headers and half the body, then closes the connection (a connection lost
    mid-download). ``proxy.gets(match)`` counts the GETs seen for a path. Stopped after the test.
"""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
              b"<Message>Please reduce your request rate.</Message></Error>")


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._faults: list[list] = []  # [match, times left, how]
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, fault)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)
        self._thread.start()

    def fail(self, match: str, times: int = 1, how: str = "503") -> None:
        assert how in ("503", "drop"), how
        with self._lock:
            self._faults.append([match, times, how])

    def gets(self, match: str) -> int:
        with self._lock:
            return sum(1 for method, path, _ in self.seen if method == "GET" and match in path)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            fault = None
            for rule in self._faults:
                if method == "GET" and rule[0] in path and rule[1] > 0:
                    rule[1] -= 1
                    fault = rule[2]
                    break
            self.seen.append((method, path, fault))
            return fault

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        body = _request_body(request)
        fault = self._take_fault(request.command, request.path)
        if fault == "503":
            _answer(request, 503, "Slow Down", [("Content-Type", "application/xml")], _SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-length"}}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            upstream.request(request.command, request.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}]
            length = response.getheader("Content-Length") if request.command == "HEAD" else None
        finally:
            upstream.close()
        if fault == "drop":
            _answer(request, response.status, response.reason, kept, data, cut=len(data) // 2)
        else:
            _answer(request, response.status, response.reason, kept, data, head_length=length)


def _request_body(request: BaseHTTPRequestHandler) -> bytes | None:
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        out = bytearray()
        while True:
            size = int(request.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += request.rfile.read(size)
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length else None


def _answer(request: BaseHTTPRequestHandler, status: int, reason: str, headers: list[tuple[str, str]], data: bytes,
            *, cut: int | None = None, head_length: str | None = None) -> None:
    """Send a response; with cut, only that much of the body, then the connection is dropped."""
    request.send_response_only(status, reason)
    for key, value in headers:
        request.send_header(key, value)
    request.send_header("Content-Length", head_length if head_length is not None else str(len(data)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(data if cut is None else data[:cut])
    request.wfile.flush()
    if cut is not None:
        request.close_connection = True
        request.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def s3_fault_proxy(moto_server):
    proxy = FaultProxy(moto_server)
    yield proxy
    proxy.stop()
