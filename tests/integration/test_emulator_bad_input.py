"""Bad input to the emulator's command line, run as the real command for every value of a table.

Each case runs ``qilbee-backup emulator`` (the console script this checkout declares) and
``python -m qilbee_backup.emulator``, and asserts: the exit code (2 for a bad option value,
1 when the port or the data directory cannot be used), exactly one line on stderr in the
main command's style, nothing on stdout, no traceback, and nothing created or changed on
disk: the working directory, the data directory and everything beside them are byte for
byte as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from rocksdict import Options, Rdict

from qilbee_backup.emulator.auth import API_KEY_ENV
from tests.plugins.emulator import REPO_ROOT, free_port

pytestmark = pytest.mark.integration

QILBEEDB_FAMILIES = ("nodes", "relationships", "label_index", "adjacency_out", "adjacency_in",
                     "property_index", "schema", "meta", "memory")  # the real server's, written out
RUN_TIMEOUT = 30.0


def _console_script() -> list[str]:
    """``qilbee-backup`` as this checkout's pyproject declares it (module:function)."""
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["qilbee-backup"]
    module, _, function = declared.partition(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


ENTRY_POINTS = {
    "qilbee-backup": [*_console_script(), "emulator"],
    "python-m": [sys.executable, "-m", "qilbee_backup.emulator"],
}


# ---------------------------------------------------------------- what the cases stand on


def _rocksdb(path: Path, families: tuple[str, ...], records: dict[str, dict[bytes, bytes]] | None = None) -> None:
    """A RocksDB made with rocksdict, with these column families and records."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    db = Rdict(str(path), options, column_families={name: Options(raw_mode=True) for name in families})
    for name, pairs in (records or {}).items():
        cf = db if name == "default" else db.get_column_family(name)
        for key, value in pairs.items():
            cf[key] = value
    db.close()


def _qilbeedb(path: Path) -> None:
    _rocksdb(path, QILBEEDB_FAMILIES, {"meta": {b"graphs": b'["g"]'}})


def _file(path: Path) -> None:
    path.write_text("not a directory\n")


def _files(path: Path) -> None:
    (path / "photos").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "photos" / "a.jpg").write_bytes(b"\xff\xd8\xff")


def _garbage_current(path: Path) -> None:
    path.mkdir()
    (path / "CURRENT").write_text("garbage\n")
    (path / "000001.sst").write_bytes(b"not a table")


@dataclass
class World:
    root: Path  # every path a case names lives here; it is compared before and after
    stack: contextlib.ExitStack
    emulator_factory: Callable[..., object]
    values: dict[str, str] = field(default_factory=dict)

    def mount_read_only(self, source: Path | None, target: Path) -> None:
        """A read-only bind mount of ``source`` (a read-only tmpfs when None) at ``target``, undone after."""
        if os.geteuid() != 0:
            pytest.skip("a read-only mount needs root")
        target.mkdir()
        steps = ([["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)]] if source is None else
                 [["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]])
        for i, argv in enumerate(steps):
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode:
                if i == 0:
                    pytest.skip(f"cannot mount here: {done.stderr.strip()}")
                subprocess.run(["umount", str(target)], check=True)
                raise AssertionError(f"{argv}: {done.stderr.strip()}")
            if i == 0:
                self.stack.callback(subprocess.run, ["umount", str(target)], check=True)


def _read_only_database(world: World) -> None:
    _qilbeedb(world.root / "ro-source")
    world.mount_read_only(world.root / "ro-source", world.root / "ro")


def _read_only_directory(world: World) -> None:
    (world.root / "ro-source").mkdir()
    world.mount_read_only(world.root / "ro-source", world.root / "ro")


def _read_only_tmpfs(world: World) -> None:
    world.mount_read_only(None, world.root / "ro")


def _in_use(world: World) -> None:
    server = world.emulator_factory(data_dir=world.root / "served")
    world.values["pid"] = str(server.pid)


def _busy_port(world: World) -> None:
    sock = world.stack.enter_context(socket.socket())
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    world.values["port"] = str(sock.getsockname()[1])


def at(name: str, make: Callable[[Path], None]) -> Callable[[World], None]:
    return lambda world: make(world.root / name)


# ---------------------------------------------------------------- the table


@dataclass
class Case:
    id: str
    argv: list[str]  # {w}: the world directory, {port}: a free (or the busy) port
    code: int
    says: tuple[str, ...] = ()  # in the error line, after formatting like argv
    setup: Callable[[World], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    data_dir: str | None = "{w}/data"  # added as --data-dir unless None or argv has one


CASES = [
    # --port
    Case("port-70000", ["--port", "70000"], 2, ("--port", "70000")),
    Case("port-minus-1", ["--port", "-1"], 2, ("--port", "-1")),
    Case("port-abc", ["--port", "abc"], 2, ("--port", "abc")),
    Case("port-empty", ["--port", ""], 2, ("--port",)),
    Case("port-in-use", [], 1, ("127.0.0.1:{port}", "in use"), setup=_busy_port),
    # --host
    Case("host-words", ["--host", "not an address"], 2, ("--host", "not an address")),
    Case("host-empty", ["--host", ""], 2, ("--host",)),
    Case("host-999", ["--host", "999.1.1.1"], 2, ("--host", "999.1.1.1")),
    Case("host-not-local", ["--host", "192.0.2.1"], 1, ("192.0.2.1:{port}", "assign")),
    # --data-dir
    Case("data-dir-missing", [], 2, ("--data-dir",), data_dir=None),
    Case("data-dir-empty-string", ["--data-dir", ""], 2, ("--data-dir",)),
    Case("data-dir-is-a-file", ["--data-dir", "{w}/file"], 1, ("{w}/file", "not a directory"), setup=at("file", _file)),
    Case("data-dir-under-a-file", ["--data-dir", "{w}/file/data"], 1, ("{w}/file/data", "Not a directory"),
         setup=at("file", _file)),
    Case("data-dir-missing-parent", ["--data-dir", "{w}/no/such/data"], 1, ("{w}/no/such", "does not exist")),
    Case("data-dir-name-256-bytes", ["--data-dir", "{w}/" + "é" * 128], 1, ("File name too long",)),
    Case("data-dir-dangling-symlink", ["--data-dir", "{w}/link"], 1, ("{w}/link", "symbolic link"),
         setup=lambda world: (world.root / "link").symlink_to(world.root / "nowhere")),
    Case("data-dir-read-only-database", ["--data-dir", "{w}/ro"], 1, ("{w}/ro", "Read-only file system"),
         setup=_read_only_database),
    Case("data-dir-read-only-empty", ["--data-dir", "{w}/ro"], 1, ("{w}/ro", "Read-only file system"),
         setup=_read_only_directory),
    Case("data-dir-read-only-tmpfs", ["--data-dir", "{w}/ro"], 1, ("{w}/ro", "Read-only file system"),
         setup=_read_only_tmpfs),
    Case("data-dir-new-in-read-only", ["--data-dir", "{w}/ro/data"], 1, ("{w}/ro/data", "Read-only file system"),
         setup=_read_only_directory),
    Case("data-dir-other-rocksdb", ["--data-dir", "{w}/shop"], 1, ("{w}/shop", "not QilbeeDB's", "users"),
         setup=at("shop", lambda p: _rocksdb(p, ("users", "orders"), {"users": {b"u1": b"ada"}}))),
    Case("data-dir-plain-rocksdb", ["--data-dir", "{w}/kv"], 1, ("{w}/kv", "missing column families nodes"),
         setup=at("kv", lambda p: _rocksdb(p, (), {"default": {b"k": b"v"}}))),
    Case("data-dir-extra-family", ["--data-dir", "{w}/more"], 1, ("{w}/more", "unexpected column families extra"),
         setup=at("more", lambda p: _rocksdb(p, (*QILBEEDB_FAMILIES, "extra")))),
    Case("data-dir-no-graphs-key", ["--data-dir", "{w}/nokey"], 1, ("{w}/nokey", "'graphs'"),
         setup=at("nokey", lambda p: _rocksdb(p, QILBEEDB_FAMILIES, {"nodes": {b"g\x00" + bytes(8): b"{}"}}))),
    Case("data-dir-bad-graphs-key", ["--data-dir", "{w}/badkey"], 1, ("{w}/badkey", "'graphs'"),
         setup=at("badkey", lambda p: _rocksdb(p, QILBEEDB_FAMILIES, {"meta": {b"graphs": b"not json"}}))),
    Case("data-dir-files-not-rocksdb", ["--data-dir", "{w}/home"], 1, ("{w}/home", "no CURRENT"),
         setup=at("home", _files)),
    Case("data-dir-garbage-current", ["--data-dir", "{w}/junk"], 1, ("{w}/junk", "not a readable RocksDB"),
         setup=at("junk", _garbage_current)),
    Case("data-dir-in-use", ["--data-dir", "{w}/served"], 1, ("{w}/served", "in use", "process {pid}"), setup=_in_use),
    # --seed-nodes
    Case("seed-minus-1", ["--seed-nodes", "-1"], 2, ("--seed-nodes", "-1")),
    Case("seed-10-to-the-12", ["--seed-nodes", "1000000000000"], 2, ("--seed-nodes", "1000000000000")),
    Case("seed-abc", ["--seed-nodes", "abc"], 2, ("--seed-nodes", "abc")),
    # logins and the API key
    Case("api-key-empty", ["--api-key", ""], 2, ("--api-key", "empty")),
    Case("api-key-env-empty", [], 2, ("--api-key", API_KEY_ENV), env={API_KEY_ENV: ""}),
    Case("api-key-with-blank", ["--api-key", "two words"], 2, ("--api-key",)),
    Case("admin-user-empty", ["--admin-user", ""], 2, ("--admin-user",)),
    Case("admin-password-empty", ["--admin-password", ""], 2, ("--admin-password",)),
    Case("user-without-colon", ["--user", "ops"], 2, ("--user", "NAME:PASSWORD")),
    Case("user-without-name", ["--user", ":pw"], 2, ("--user",)),
    Case("user-named-admin", ["--user", "admin:pw"], 2, ("--user", "admin")),
    Case("user-twice", ["--user", "ops:1", "--user", "ops:2"], 2, ("--user", "ops")),
    # the rest
    Case("log-level-loud", ["--log-level", "loud"], 2, ("--log-level", "loud")),
    Case("no-admin-api-with-value", ["--no-admin-api=yes"], 2, ("--no-admin-api",)),
    Case("unknown-flag", ["--bogus"], 2, ("--bogus",)),
]


def _argv(case: Case, values: dict[str, str]) -> list[str]:
    argv = [arg.format(**values) for arg in case.argv]
    if case.data_dir is not None and "--data-dir" not in argv:
        argv += ["--data-dir", case.data_dir.format(**values)]
    if "--port" not in argv:
        argv += ["--port", values["port"]]
    return argv


# ---------------------------------------------------------------- running and comparing


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, mode, size, modification time and content hash (link target)."""
    found = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            else:
                content = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            found[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns,
                                                   content)
    return found


@dataclass
class Outcome:
    code: int | str  # the exit code, or "served" / "timeout" when it had to be killed
    stdout: str
    stderr: str


def run_command(argv: list[str], cwd: Path, env: dict[str, str], logs: Path) -> Outcome:
    """Run to its end; a server that starts listening is stopped at once (that is a failure here)."""
    out, err = logs / "stdout", logs / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    code: int | str | None = None
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while code is None:
            if proc.poll() is not None:
                code = proc.returncode
            elif b"listening on" in err.read_bytes():
                code = "served"
            elif time.monotonic() > deadline:
                code = "timeout"
            else:
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Outcome(code, out.read_text(errors="replace"), err.read_text(errors="replace"))


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, entry, tmp_path, emulator_factory):
    world_root, logs = tmp_path / "world", tmp_path / "logs"
    for path in (world_root / "cwd", logs):
        path.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(case.env)
    with contextlib.ExitStack() as stack:
        world = World(world_root, stack, emulator_factory, {"w": str(world_root), "port": str(free_port())})
        if case.setup is not None:
            case.setup(world)
        argv = _argv(case, world.values)
        before = snapshot(world_root)
        outcome = run_command([*ENTRY_POINTS[entry], *argv], world_root / "cwd", env, logs)
        after = snapshot(world_root)

    lines = outcome.stderr.splitlines()
    shown = f"{entry} {argv} -> exit {outcome.code}, stderr: {outcome.stderr[-1500:]!r}"
    assert "Traceback" not in outcome.stderr, shown
    assert outcome.code == case.code, shown
    assert len(lines) == 1 and lines[0].startswith("qilbee-backup: error: "), shown
    for text in case.says:
        assert text.format(**world.values) in lines[0], shown
    assert outcome.stdout == "", shown
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert changed == [], f"{shown}; changed on disk: {changed[:20]}"


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_new_or_empty_directory_still_starts(entry, tmp_path):
    """What is not bad input still works: a missing directory (parent present), an empty one, port 0."""
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for name in ("new", "empty", "new"):  # the last: the database the first run made, no graph in it
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as stderr:
            proc = subprocess.Popen([*ENTRY_POINTS[entry], "--data-dir", str(tmp_path / name), "--port", "0"],
                                    cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while not (found := re.search(r"listening on (http://\S+)", log.read_text())):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert httpx.get(f"{found[1]}/health").status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()
        assert (tmp_path / name / "CURRENT").is_file()
