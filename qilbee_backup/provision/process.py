"""Provision a QilbeeDB server as a local process (the emulator by default, or the real binary).

    p = ProcessProvisioner()                                   # our emulator, on a free 127.0.0.1 port
    p = ProcessProvisioner(server_cmd="qilbeedb {data_dir}")   # the real server: it always serves 7474

The command is a template: `{data_dir}`, `{port}` and `{host}` are filled in for each
start (a string is split like a shell would, with shlex, and never run through one).
A command without `{port}` is taken to serve the real server's fixed port 7474.

The server does not inherit this process's environment (it holds the AWS keys, the source's
API key, the TSIG secret, Prefect's credentials). It gets PATH, HOME, LANG, LANGUAGE, LC_*, TZ
and TMPDIR (those set here); the default emulator command also gets what this interpreter needs
to start and import the package (PYTHONPATH with the package's root first, PYTHONHOME,
LD_LIBRARY_PATH). A variable the real server needs is the operator's explicit choice:

    ProcessProvisioner(server_cmd="qilbeedb {data_dir}", pass_env=["RUST_LOG", "SERVER_SECRET"])
    ProcessProvisioner(server_cmd=..., env={"RUST_LOG": "info"})

`pass_env` names variables copied from this environment at each start (the way to hand over a
secret: its value never sits in a flow parameter); `env` sets values (they win over pass_env).
A custom command that runs our emulator from an uninstalled checkout needs PYTHONPATH this way.

The server runs in its own session, so it outlives the flow or CLI that started it (a
recovered database must keep serving after `qilbee-backup dr` exits); its output goes to a
log file next to the data directory. It is stopped by its PID alone: SIGTERM, then SIGKILL
after `stop_timeout`. A PID known only from an Instance record (e.g. after a CLI restart) is
signalled only while /proc/<pid>/cmdline still names the instance's data directory, so a
recycled PID is never hit. A server that fails to start is reported with the reason its log
gives (its last line that reads like an error), or that it wrote nothing. Note: the real server
flushes on Ctrl-C (SIGINT) but does not handle SIGTERM; its durability on stop rests on RocksDB's
write-ahead log.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from qilbee_backup.errors import UsageError
from qilbee_backup.provision.base import (
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    LOOPBACK,
    QILBEEDB_PORT,
    Instance,
    NotHealthy,
    ProvisionError,
    failure_reason,
    Provisioner,
    base_environment,
    check_env,
    check_pass_env,
    check_timeout,
    chosen_environment,
    ensure_port_free,
    free_port,
    render,
    template_fields,
    url_for,
    wait_until_healthy,
)

# The directory holding the qilbee_backup package: on PYTHONPATH, the emulator imports
# even when the project is run from a checkout and not installed.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# What this interpreter may need to start and import its packages: passed (when set here) to the
# default emulator command only, which runs this very interpreter. None of them is a secret.
EMULATOR_ENV = ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH")


def default_server_cmd() -> list[str]:
    """Our emulator, run by this interpreter."""
    return [sys.executable, "-m", "qilbee_backup.emulator",
            "--data-dir", "{data_dir}", "--host", "{host}", "--port", "{port}"]


def parse_server_cmd(server_cmd: Sequence[str] | str | None) -> list[str]:
    """The command template as a list: a string is split with shlex; None is the emulator."""
    if server_cmd is None:
        return default_server_cmd()
    if isinstance(server_cmd, str):
        try:
            argv = shlex.split(server_cmd)
        except ValueError as exc:
            raise UsageError(f"cannot split the server command: {exc}") from None
    else:
        argv = list(server_cmd)
    if not argv or not all(isinstance(arg, str) and arg for arg in argv):
        raise UsageError("the server command must be a non-empty list of non-empty strings")
    template_fields(argv)  # unknown placeholders are a usage error now, not at start
    return argv


def read_cmdline(pid: int) -> list[str] | None:
    """The arguments of a live process, or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (OSError, IndexError):
        return None
    if state in (b"Z", b"X"):
        return None
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def names_data_dir(cmdline: Sequence[str], data_dir: Path) -> bool:
    """Whether a command line names this data directory: as an argument, `--opt=DIR`, or a word of `sh -c`."""
    wanted = str(data_dir)
    for arg in cmdline:
        for word in (arg, *arg.split()):
            if word == wanted or word.rpartition("=")[2] == wanted:
                return True
    return False


class ProcessProvisioner(Provisioner):
    """QilbeeDB servers as local processes, each in its own session.

    `env` (name -> value) and `pass_env` (names copied from this environment at start) are the
    only variables the server gets beyond PATH, HOME, locale, TZ and TMPDIR; see the module doc.
    """

    name = "process"

    def __init__(
        self,
        server_cmd: Sequence[str] | str | None = None,
        host: str = LOOPBACK,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        log_dir: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        pass_env: Sequence[str] | str | None = None,
    ):
        if not isinstance(host, str) or not host:
            raise UsageError(f"host must be an address such as 127.0.0.1, got {host!r}")
        self.template = parse_server_cmd(server_cmd)
        self._runs_emulator = server_cmd is None  # our default command: this interpreter, our package
        self.host = host
        self.health_timeout = check_timeout("health_timeout", health_timeout)
        self.stop_timeout = check_timeout("stop_timeout", stop_timeout)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._extra_env = check_env(env)
        self._pass_env = check_pass_env(pass_env)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def __repr__(self) -> str:
        # Only the program: the arguments or environment may carry an API key.
        return f"ProcessProvisioner(program={Path(self.template[0]).name!r}, host={self.host!r})"

    # -- the interface

    def start(self, data_dir: Path, *, port: int | None = None, name: str | None = None) -> Instance:
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        port = self._choose_port(port)
        ensure_port_free(self.host, port)
        argv = render(self.template, data_dir=data_dir, port=port, host=self.host)
        log_path = (self.log_dir or data_dir.parent) / f"{name or data_dir.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        url = url_for(self.host, port)

        with open(log_path, "ab") as log:
            log_start = log.tell()  # the error message shows only this run's output
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self._environment(), start_new_session=True, close_fds=True,
                )
            except OSError as exc:
                raise ProvisionError(
                    f"cannot run the server command {argv[0]!r}: {exc.strerror or exc}"
                ) from None
        self._children[proc.pid] = proc
        instance = Instance(provider=self.name, url=url, data_dir=data_dir, port=port,
                            pid=proc.pid, log_path=log_path)

        def exit_reason() -> str | None:
            code = proc.poll()
            return None if code is None else f"exited with code {code} before it was healthy"

        try:
            wait_until_healthy(url, self.health_timeout, exit_reason=exit_reason)
        except NotHealthy as exc:
            self.stop(instance)
            raise ProvisionError(
                f"QilbeeDB process (pid {proc.pid}) for {url} {exc.reason}"
                f"{'' if exc.exited else '; stopped it'}: {_log_reason(log_path, log_start)} (log {log_path})"
            ) from None
        except BaseException:  # interrupted while waiting: leave nothing behind
            self.stop(instance)
            raise
        return instance

    def stop(self, instance: Instance) -> None:
        self._check_provider(instance)
        if instance.pid is None:
            return
        proc = self._children.pop(instance.pid, None)
        if proc is not None:
            self._stop_child(proc)
        else:
            self._stop_by_pid(instance)

    def is_running(self, instance: Instance) -> bool:
        self._check_provider(instance)
        if instance.pid is None:
            return False
        proc = self._children.get(instance.pid)
        if proc is not None:
            return proc.poll() is None
        return self._is_our_server(instance)

    # -- details

    def _choose_port(self, port: int | None) -> int:
        serves_port_given = "port" in template_fields(self.template)
        if port is None:
            return free_port(self.host) if serves_port_given else QILBEEDB_PORT
        if not serves_port_given and port != QILBEEDB_PORT:
            raise UsageError(
                f"the server command has no {{port}} placeholder, so it serves {QILBEEDB_PORT}, not {port}"
            )
        return int(port)

    def _environment(self) -> dict[str, str]:
        """The server's whole environment: never this process's, only what it needs and what was chosen."""
        env = base_environment()
        if self._runs_emulator:
            env.update({name: os.environ[name] for name in EMULATOR_ENV if name in os.environ})
        env.update(chosen_environment(self._pass_env, self._extra_env))
        if self._runs_emulator:  # the emulator imports even from a checkout that is not installed
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        return env

    def _check_provider(self, instance: Instance) -> None:
        if instance.provider != self.name:
            raise UsageError(f"a {instance.provider} instance cannot be managed by the {self.name} provisioner")

    def _stop_child(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=self.stop_timeout)

    def _is_our_server(self, instance: Instance) -> bool:
        assert instance.pid is not None
        cmdline = read_cmdline(instance.pid)
        return cmdline is not None and names_data_dir(cmdline, instance.data_dir)

    def _stop_by_pid(self, instance: Instance) -> None:
        """Stop a server this object did not start, only while its PID still is that server."""
        pid = instance.pid
        assert pid is not None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self._is_our_server(instance):
                _reap(pid)
                return  # gone, or the PID now belongs to another program: nothing of ours to stop
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                raise ProvisionError(f"not allowed to signal QilbeeDB process {pid}") from None
            if _wait_gone(pid, self.stop_timeout):
                return
        raise ProvisionError(f"QilbeeDB process {pid} did not exit after SIGKILL")


def _reap(pid: int) -> bool:
    """Collect the exit status if `pid` is our own child; True when it has exited."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False  # not our child: its parent (or init) reaps it
    return done == pid


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)  # a child of ours whose Popen was dropped would otherwise linger as a zombie
        if read_cmdline(pid) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _log_reason(log_path: Path, start: int) -> str:
    """Why the server failed, from this run's part of its log."""
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            return failure_reason(f.read().decode(errors="replace"))
    except OSError as exc:
        return f"its log is unreadable ({exc.strerror or type(exc).__name__})"
