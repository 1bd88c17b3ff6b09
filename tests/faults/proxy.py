"""A fault-injecting HTTP proxy on 127.0.0.1 in front of an S3 endpoint (moto_server).

Per request, with probability ``rate``, one fault chosen at random:

    503-before   answer 503 SlowDown; the store never sees the request
    500-after    forward it, then answer 500 InternalError: the write happened, the client thinks it failed
    drop-before  close the connection without an answer; the store never sees the request
    drop-after   forward it, then close the connection without an answer

Each request is forwarded on a fresh connection, the whole answer read before it is passed on
(objects here are small). ``counts`` says how many requests were seen and each fault injected.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("503-before", "500-after", "drop-before", "drop-after")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}
_ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
              '<Message>injected by the fault proxy</Message></Error>')


class FaultProxy:
    def __init__(self, upstream_port: int, rate: float, seed: int) -> None:
        self.upstream_port = upstream_port
        self.rate = rate
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def choose(self) -> str | None:
        """The fault for the next request, or None to pass it through."""
        with self._lock:
            self.counts["requests"] += 1
            if self._rng.random() >= self.rate:
                return None
            fault = self._rng.choice(FAULTS)
            self.counts[fault] += 1
            return fault

    def summary(self) -> str:
        faults = sum(self.counts[f] for f in FAULTS)
        return f"{faults} of {self.counts['requests']} requests faulted ({', '.join(f'{f} {self.counts[f]}' for f in FAULTS)})"


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects; 100-continue answered by the base class

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        upstream.putheader(name, value)
                if body or self.command in ("PUT", "POST"):
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body)
                answer = upstream.getresponse()
                return answer.status, answer.getheaders(), answer.read()
            finally:
                upstream.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            length = str(len(body))
            self.send_response_only(status)
            for name, value in headers:
                if name.lower() == "content-length" and self.command == "HEAD":
                    length = value  # a HEAD answer announces the object's length without carrying it
                elif name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str) -> None:
            self._answer(status, [("Content-Type", "application/xml")], _ERROR_XML.format(code=code).encode())

        def _drop(self) -> None:
            self.close_connection = True  # the base class closes the socket: no answer at all

        def _handle(self) -> None:
            body = self._body()
            fault = proxy.choose()
            if fault == "503-before":
                return self._error(503, "SlowDown")
            if fault == "drop-before":
                return self._drop()
            try:
                answer = self._forward(body)
            except OSError:
                return self._error(502, "BadGateway")
            if fault == "500-after":
                return self._error(500, "InternalError")
            if fault == "drop-after":
                return self._drop()
            self._answer(*answer)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
