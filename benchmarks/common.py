"""Shared pieces of the benchmarks: servers on loopback, timing, peak memory of a child process."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextmanager
def process(args: list[str], log: Path, env: dict | None = None, health: str | None = None, timeout: float = 90.0):
    """A server process of ours, stopped by its PID at the end."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
    try:
        if health:
            wait_http(health, timeout)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextmanager
def moto(workdir: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log",
                 health=f"{url}/moto-api/data.json"):
        yield url


@contextmanager
def prefect_server(workdir: Path):
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(workdir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{workdir / 'prefect.db'}")
    prefect = Path(PY).with_name("prefect")
    with process([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)], workdir / "prefect.log",
                 env=env, health=f"http://127.0.0.1:{port}/api/health", timeout=180):
        yield f"http://127.0.0.1:{port}/api"


@contextmanager
def emulator(data_dir: Path, workdir: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PY, "-m", "qilbee_backup.emulator", "--data-dir", str(data_dir), "--port", str(port)],
                 workdir / "emulator.log", health=f"{url}/health"):
        yield url


def run_measured(args: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of a command run to its end.

    The peak RSS comes from os.wait4 on the child: the largest resident set of the child or of any
    descendant it waited for (the kernel keeps the maximum, not a sum of processes running at once).
    The child is killed by its PID if this script is interrupted while waiting, so none is left running."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, env=env, cwd=cwd or REPO_ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"{' '.join(map(str, args[:5]))} failed (exit {proc.returncode}): {tail}")
    return seconds, usage.ru_maxrss * 1024, stdout


# -- the restored-tree check ---------------------------------------------------------------------------


def tree_digests(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under root (symlinks and other non-files included as such)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "symlink:" + os.readlink(path)
        elif path.is_file():
            with open(path, "rb") as f:
                out[rel] = hashlib.file_digest(f, "sha256").hexdigest()
        elif not path.is_dir():
            out[rel] = "special"
    return out


def check_identical(expected: dict[str, str], restored: Path, who: str) -> None:
    """Raise unless the tree under restored has exactly the expected files with the expected content."""
    got = tree_digests(restored)
    if got == expected:
        return
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    differ = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    raise RuntimeError(f"{who} restored different data into {restored}: {len(missing)} files missing {missing[:3]}, "
                       f"{len(extra)} extra {extra[:3]}, {len(differ)} with other content {differ[:3]}")


# -- setup ---------------------------------------------------------------------------------------------

# Our backup deletes the server checkpoint it took once the backup is committed (--keep-checkpoints 0,
# the default). The benchmarks need that snapshot afterwards: the other tools back up the same one and
# every restore is compared with it. Keeping the newest 100000 keeps them all; it costs one listing of
# the server's checkpoints in place of one delete.
KEEP_SNAPSHOTS = ["--keep-checkpoints", "100000"]


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def cached_database(workdir: Path, size_mib: int) -> Path:
    """<workdir>/db-<size>: made by make_database.py the first time, then reused (copy it before use)."""
    base = workdir / f"db-{size_mib}"
    if not base.exists():
        making = workdir / f".db-{size_mib}.making"
        shutil.rmtree(making, ignore_errors=True)
        subprocess.run([PY, str(REPO_ROOT / "benchmarks" / "make_database.py"), str(making), "--size-mib", str(size_mib)],
                       check=True)
        making.rename(base)  # only a complete database is cached
    return base


def bench_env(scratch: Path, s3: str, api: str | None, bucket: str) -> dict:
    """The environment of every tool: S3 on moto, restic's repository in the bucket, caches in scratch;
    PREFECT_API_URL=api, or none at all (and no Prefect profile from this machine) when api is None.
    Two aws CLI configs: the default (ranged GETs over 8 MiB), and aws-config-one-get (single GETs)."""
    (scratch / "aws-config").write_text("[default]\nregion = us-east-1\n")
    (scratch / "aws-config-one-get").write_text("[default]\nregion = us-east-1\ns3 =\n  multipart_threshold = 64GB\n")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=s3, AWS_ENDPOINT_URL_S3=s3,
               AWS_CONFIG_FILE=str(scratch / "aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(scratch / "aws-credentials"),
               XDG_CACHE_HOME=str(scratch / "cache"), RESTIC_PASSWORD="bench-only", QILBEE_PASSWORD="bench-only",
               RESTIC_REPOSITORY=f"s3:{s3}/{bucket}/restic", PYTHONPATH=str(REPO_ROOT))
    if api is None:
        for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
            env.pop(name, None)
        env["PREFECT_HOME"] = str(fresh_dir(scratch / "prefect-home-none"))
    else:
        env["PREFECT_API_URL"] = api
    return env


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    # Written back now, untimed: else the kernel writes the copy's dirty pages back during the next
    # timed command (seen: the first backup after a 1 GiB copy ~1 s slower than the same one later).
    os.sync()


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"
