"""Command line of the emulator, shared by ``python -m qilbee_backup.emulator`` and ``qilbee-backup emulator``.

Bad input is one line on stderr, ``qilbee-backup: error: …`` as from the main command: exit 2
for a bad option value (checked before anything happens), exit 1 when the port cannot be
bound or the data directory cannot be used. The port is bound before the data directory is
opened, so a start that fails leaves the disk as it was.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import signal
import socket
import sys
import time
import traceback
from types import FrameType

from .auth import API_KEY_ENV, DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, AuthService, make_user
from .seed import MAX_SEED_NODES, seed_store
from .store import GraphStore, StoreError

# uvicorn and FastAPI (the app) are imported in run(): `qilbee-backup` builds this parser for
# every command, and they would add a second to each start.

_PROG = "qilbee-emulator"
ERROR_PREFIX = "qilbee-backup: error:"
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class OneLineParser(argparse.ArgumentParser):
    """argparse that fails with one line and exit 2 instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{ERROR_PREFIX} {message}\n")


class Redacted(str):
    """A secret string whose repr hides it, so a logged ``argparse.Namespace`` leaks nothing."""

    def __repr__(self) -> str:
        return "'<redacted>'"


def _whole_number(text: str, high: int, what: str) -> int:
    value = int(text) if text.strip().isdecimal() and len(text) <= 20 else -1
    if not 0 <= value <= high:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _port(text: str) -> int:
    return _whole_number(text, 65535, "a port: give 0-65535 (0 picks a free one)")


def _seed_nodes(text: str) -> int:
    return _whole_number(text, MAX_SEED_NODES, f"a node count: give 0-{MAX_SEED_NODES}")


def _data_dir(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _host(text: str) -> str:
    """An IP address or a host name (resolved when the port is bound)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    if len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit():
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or host name")


def _name(text: str) -> str:
    if not text.strip() or not text.isprintable():
        raise argparse.ArgumentTypeError(f"{text!r} is not a user name: printable characters, not only blanks")
    return text


def _password(text: str) -> Redacted:
    if not text:
        raise argparse.ArgumentTypeError("the password is empty")
    return Redacted(text)


def _api_key(text: str) -> Redacted:
    if not text:
        raise argparse.ArgumentTypeError(f"the key (or ${API_KEY_ENV}) is empty: that would leave /admin/* open")
    # It travels as an HTTP header value, which clients trim and cannot carry beyond printable ASCII.
    if not re.fullmatch(r"[\x21-\x7e]+", text):
        raise argparse.ArgumentTypeError("the key must be printable ASCII without blanks: it is sent as an HTTP header")
    return Redacted(text)


def _user_spec(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return _name(name), _password(password)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the emulator's options on ``parser``."""
    parser.add_argument("--data-dir", type=_data_dir, required=True,
                        help="RocksDB data directory: QilbeeDB's, or new or empty (created if missing; its parent must exist)")
    parser.add_argument("--host", type=_host, default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=7474, help="port to bind; 0 picks a free one (default 7474)")
    parser.add_argument(
        "--seed-nodes", type=_seed_nodes, default=0, metavar="N",
        help=f"fill an empty data directory with about N nodes of demo data (deterministic for N; at most {MAX_SEED_NODES})",
    )
    parser.add_argument(
        "--no-admin-api", dest="admin_api", action="store_false",
        help="serve no /admin/* routes and no GET /graphs, like today's real server",
    )
    parser.add_argument(
        "--api-key", type=_api_key, default=os.environ.get(API_KEY_ENV), metavar="KEY",
        help=f"require X-API-Key: KEY or an admin bearer token on /admin/* (default: ${API_KEY_ENV}; unset: open)",
    )
    parser.add_argument("--admin-user", type=_name, default=DEFAULT_ADMIN_USER, help="admin login name (default admin)")
    parser.add_argument(
        "--admin-password", type=_password, default=Redacted(DEFAULT_ADMIN_PASSWORD),
        help="admin login password (default: the real server's bootstrap password)",
    )
    parser.add_argument(
        "--user", dest="users", action="append", type=_user_spec, default=[], metavar="NAME:PASSWORD",
        help="an extra login without admin rights (repeatable)",
    )
    parser.add_argument(
        "--log-level", type=str.lower, default="warning", choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (default warning)",
    )


def _announcing_server(config, data_dir: str):
    """uvicorn, announcing the bound address once it listens."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
            await super().startup(sockets)
            if self.should_exit or not self.servers:
                return
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"{_PROG}: listening on http://{_shown(host)}:{port} (data dir {data_dir})", file=sys.stderr, flush=True)

    return _Server(config)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # IPv6 literal in a URL


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    # Before uvicorn takes over (opening, seeding) and when it re-raises the signal after its
    # graceful shutdown: unwind through ``finally`` so the store is closed, and exit 0.
    raise SystemExit(0)


class _Refused(Exception):
    """The emulator cannot start; ``code`` is the exit code, the message one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _check_logins(args: argparse.Namespace) -> None:
    seen = {args.admin_user}
    for name, _ in args.users:
        if name in seen:
            owner = "the admin" if name == args.admin_user else "another --user"
            raise _Refused(2, f"argument --user: {name!r} is {owner}'s login name already")
        seen.add(name)


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``, for uvicorn to serve once the store is open.

    Listening at once holds the port (SO_REUSEADDR would let a second server bind it until then);
    a client that connects while the store opens or seeds waits instead of being refused.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise _Refused(1, f"cannot listen on {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart beside TIME_WAIT
        sock.bind(address)
        sock.listen()
    except OSError as exc:
        sock.close()
        raise _Refused(1, f"cannot listen on {_shown(host)}:{port}: {exc.strerror or exc}") from None
    return sock


def run(args: argparse.Namespace) -> int:
    """Bind the port, open the store, seed it if asked, serve until SIGTERM or Ctrl-C. Exit code."""
    try:
        return _serve(args)
    except _Refused as exc:
        print(f"{ERROR_PREFIX} {exc}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # one line, as every other failure; the trace only when asked for
        if args.log_level == "debug":
            traceback.print_exc()
        print(f"{ERROR_PREFIX} the emulator failed: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    _check_logins(args)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    sock = _listen(args.host, args.port)  # before the store: a busy port leaves the disk untouched
    try:
        try:
            store = GraphStore(args.data_dir)
        except StoreError as exc:
            raise _Refused(1, str(exc)) from None
        try:
            return _serve_store(args, store, sock)
        finally:
            store.close()
    finally:
        sock.close()


def _serve_store(args: argparse.Namespace, store: GraphStore, sock: socket.socket) -> int:
    import uvicorn

    from .app import create_app

    if args.seed_nodes:
        began = time.monotonic()
        counts = seed_store(store, args.seed_nodes)
        if counts is None:
            print(f"{_PROG}: data dir already holds graphs; not seeding", file=sys.stderr)
        else:
            print(
                f"{_PROG}: seeded {counts['nodeCount']} nodes and {counts['relationshipCount']} "
                f"relationships in {time.monotonic() - began:.1f}s",
                file=sys.stderr,
            )
    users = [make_user(args.admin_user, args.admin_password, ("admin",))]
    users += [make_user(name, password, ("read",)) for name, password in args.users]
    auth = AuthService(users, api_key=args.api_key)
    app = create_app(store, auth, admin_api=args.admin_api, close_store_on_shutdown=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("info", "debug"),
        timeout_graceful_shutdown=10,
    )
    server = _announcing_server(config, str(store.data_dir))
    server.run(sockets=[sock])
    return 0 if server.started else 1
