"""Command line of the emulator, shared by ``python -m qilbee_backup.emulator`` and ``qilbee-backup emulator``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

from .auth import API_KEY_ENV, DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, AuthService, make_user
from .store import GraphStore, StoreError

# uvicorn, FastAPI (the app) and the seeder are imported in run(): `qilbee-backup` builds this
# parser for every command, and they would add a second to each start.

_PROG = "qilbee-emulator"


class Redacted(str):
    """A secret string whose repr hides it, so a logged ``argparse.Namespace`` leaks nothing."""

    def __repr__(self) -> str:
        return "'<redacted>'"


def _user_spec(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return name, Redacted(password)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the emulator's options on ``parser``."""
    parser.add_argument("--data-dir", required=True, help="RocksDB data directory (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7474, help="port to bind; 0 picks a free one (default 7474)")
    parser.add_argument(
        "--seed-nodes", type=int, default=0, metavar="N",
        help="fill an empty data directory with about N nodes of demo data (deterministic for N)",
    )
    parser.add_argument(
        "--no-admin-api", dest="admin_api", action="store_false",
        help="serve no /admin/* routes and no GET /graphs, like today's real server",
    )
    parser.add_argument(
        "--api-key", type=Redacted, default=os.environ.get(API_KEY_ENV), metavar="KEY",
        help=f"require X-API-Key: KEY or an admin bearer token on /admin/* (default: ${API_KEY_ENV}; unset: open)",
    )
    parser.add_argument("--admin-user", default=DEFAULT_ADMIN_USER, help="admin login name (default admin)")
    parser.add_argument(
        "--admin-password", type=Redacted, default=Redacted(DEFAULT_ADMIN_PASSWORD),
        help="admin login password (default: the real server's bootstrap password)",
    )
    parser.add_argument(
        "--user", dest="users", action="append", type=_user_spec, default=[], metavar="NAME:PASSWORD",
        help="an extra login without admin rights (repeatable)",
    )
    parser.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
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
            shown = f"[{host}]" if ":" in host else host  # IPv6 literal in a URL
            print(f"{_PROG}: listening on http://{shown}:{port} (data dir {data_dir})", file=sys.stderr, flush=True)

    return _Server(config)


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    # Before uvicorn takes over (opening, seeding) and when it re-raises the signal after its
    # graceful shutdown: unwind through ``finally`` so the store is closed, and exit 0.
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    """Open the store, seed it if asked, serve until SIGTERM or Ctrl-C, close the store. Exit code."""
    if args.seed_nodes < 0:
        print(f"{_PROG}: --seed-nodes must be 0 or more", file=sys.stderr)
        return 2
    import uvicorn

    from .app import create_app
    from .seed import seed_store

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    try:
        store = GraphStore(args.data_dir)
    except StoreError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    try:
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
        auth = AuthService(users, api_key=args.api_key or None)
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
        server.run()
        return 0 if server.started else 1
    finally:
        store.close()
