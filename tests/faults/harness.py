"""What every fault scenario shares.

Cli        runs the real `qilbee-backup` to its end, or SIGKILLs it after a delay
Trial      one injected fault: collects broken invariants instead of stopping at the first,
           and checks each run's contract (no traceback on stderr; a failure is exit 1 or 2 whose
           last stderr line, and only that line, starts with "qilbee-backup: error:"; a command
           that ran to its end left nothing in its TMPDIR)
RawRepo    the repository's objects behind the tool's back (a directory, or an S3 prefix on moto)
check_repository   the repository invariant: `verify --read-data`, run without faults, fails
           exactly the damaged backups, naming each, and passes every other listed backup
tree / check_restore   a restore's target against the snapshot it was taken from, by SHA-256
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
QILBEE_BACKUP = str(Path(sys.executable).with_name("qilbee-backup"))
TRACEBACK = "Traceback (most recent call last)"
ERROR_PREFIX = "qilbee-backup: error:"
_MANIFEST_KEY = re.compile(r"backups/(\d{8}T\d{6}Z-[0-9a-f]{6})(?:\.[0-9a-f]{64})?\.json")  # v2: the name carries a digest
_TAG = "QILBEE_FAULT_TAG"


# -- running the CLI ------------------------------------------------------------------------


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool = False
    left_in_tmp: list[str] = field(default_factory=list)  # what the command left in its own TMPDIR

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @property
    def error_line(self) -> str:
        """The last 'qilbee-backup: error:' line, else the last line."""
        errors = [line for line in self.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
        return errors[-1] if errors else self.last_line

    def result(self):
        """The --json result on stdout, or None."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None

    def __str__(self) -> str:
        what = "killed" if self.killed else f"exit {self.code}"
        return f"`{self.args[0]}` {what}: {self.error_line[:300]}"


class Cli:
    """`qilbee-backup` as a subprocess against one Prefect server. Every process it starts carries a
    tag in its environment, inherited by whatever it starts (a restore's check server, in its own
    session), so reap() finds and kills exactly those, and nothing else."""

    def __init__(self, prefect_api: str, scratch: Path) -> None:
        self.prefect_api = prefect_api
        self.scratch = scratch
        self.tag = uuid.uuid4().hex
        self.runs = 0

    def env(self, s3_endpoint: str | None, tmp: Path) -> dict[str, str]:
        env = dict(os.environ, PREFECT_API_URL=self.prefect_api, XDG_CACHE_HOME=str(self.scratch / "cache"),
                   TMPDIR=str(tmp), **{_TAG: self.tag})
        env["PREFECT_LOGGING_TO_API_ENABLED"] = "false"  # ~0.5 s less per command; the logs still go to stderr
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.pop("QILBEE_API_KEY", None)
        if s3_endpoint:
            env["AWS_ENDPOINT_URL_S3"] = env["AWS_ENDPOINT_URL"] = s3_endpoint
        return env

    def __call__(self, *args: str, kill_after: float | None = None, s3_endpoint: str | None = None,
                 timeout: float = 300) -> Run:
        """Run the command to its end, or SIGKILL its process group after kill_after seconds."""
        self.runs += 1
        tmp = self.scratch / f"tmp-{self.runs}"  # a TMPDIR of its own: what is left there, it left
        tmp.mkdir()
        started = time.monotonic()
        proc = subprocess.Popen([QILBEE_BACKUP, *args], env=self.env(s3_endpoint, tmp), cwd=self.scratch, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=kill_after if kill_after is not None else timeout)
            killed = False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we made for our own child
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            self.reap()
            if kill_after is None:
                raise AssertionError(f"qilbee-backup {' '.join(args)} did not end within {timeout:.0f} s:\n{err[-3000:]}") from None
            killed = True
        return Run(tuple(args), proc.returncode, out, err, time.monotonic() - started, killed, sorted(os.listdir(tmp)))

    def reap(self) -> None:
        """SIGKILL every process still carrying our tag: servers a killed command had started."""
        marker = f"{_TAG}={self.tag}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass


# -- trials and the tally -------------------------------------------------------------------


@dataclass
class Trial:
    scenario: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # shown beside the scenario's counts

    def check(self, ok: object, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return bool(ok)

    def contract(self, run: Run) -> None:
        """The stderr contract every command keeps, killed or not (a killed one only the first rule)."""
        if TRACEBACK in run.stderr:
            whose = "Prefect's log of the failed flow run" if "Encountered exception during execution" in run.stderr else "uncaught"
            self.problems.append(f"`{run.args[0]}` printed a Python traceback on stderr ({whose})")
        if run.killed:
            return
        self.check(not run.left_in_tmp, f"{run} -- left {run.left_in_tmp} in its TMPDIR")
        if run.code == 0:
            return
        if not self.check(run.code in (1, 2), f"{run} -- exit code must be 0, 1 or 2"):
            return
        errors = [line for line in run.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
        self.check(run.last_line.startswith(ERROR_PREFIX) and len(errors) == 1,
                   f"{run} -- a failure must end in exactly one '{ERROR_PREFIX}' line (found {len(errors)}; "
                   f"the last line: {run.last_line[:120]})")


class Book:
    """One test's trials."""

    def __init__(self, tally: "Tally") -> None:
        self.tally, self.failed = tally, []

    @contextmanager
    def trial(self, scenario: str) -> Iterator[Trial]:
        trial = Trial(scenario)
        try:
            yield trial
        except Exception as exc:
            trial.problems.append(f"the trial itself broke: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.tally.add(trial)
            self.failed += [f"{scenario}: {p}" for p in trial.problems]

    def assert_all_passed(self) -> None:
        assert not self.failed, f"{len(self.failed)} invariant(s) broken:\n" + "\n".join(self.failed)


class Tally:
    """Across the session: per scenario, trials tried and passed, and every broken invariant."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.notes: dict[str, list[str]] = {}
        self.problems: list[str] = []

    def book(self) -> Book:
        return Book(self)

    def add(self, trial: Trial) -> None:
        row = self.rows.setdefault(trial.scenario, [0, 0])
        row[0] += 1
        row[1] += not trial.problems
        self.notes.setdefault(trial.scenario, []).extend(trial.notes)
        self.problems += [f"{trial.scenario}: {p}" for p in trial.problems]

    def lines(self) -> list[str]:
        width = max(len(s) for s in self.rows)
        out = [f"{scenario:<{width}}  {tried:3d} tried / {passed:3d} passed  {'; '.join(self.notes[scenario])}".rstrip()
               for scenario, (tried, passed) in self.rows.items()]
        if self.problems:
            out.append(f"broken invariants ({len(self.problems)}):")
            out += [f"  {p}" for p in self.problems]
        return out


# -- the source and the repository behind the tool's back --------------------------------------


@dataclass
class Source:
    url: str
    data_dir: Path
    grown: int = 0

    def grow(self, nodes: int = 20) -> None:
        """Write some nodes, so the next backup differs from the last."""
        self.grown += 1
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for i in range(nodes):
                client.post("/graphs/faults/nodes", json={"labels": ["Fault"], "properties": {"round": self.grown, "i": i}}).raise_for_status()

    def backup(self, *repos: "RawRepo") -> tuple[str, ...]:
        """The `backup` command into these repositories; the server keeps its checkpoints, which are
        what every restore is compared with."""
        return ("backup", "--source", self.url, *(a for r in repos for a in ("--repo", r.url)), "--kind", "daily",
                "--keep-checkpoints", "1000", "--json")

    def snapshot(self, manifest: dict) -> Path:
        """The server's checkpoint a backup was taken from (it stays in the data directory)."""
        return self.data_dir / "snapshots" / manifest["source"]["snapshot_id"]


class RawRepo:
    """A repository's objects read and written directly: a directory, or an S3 prefix on moto (never via a proxy)."""

    def __init__(self, url: str, s3=None) -> None:
        self.url = url
        self.kind = "s3" if s3 is not None else "local"
        self.s3 = s3
        if url.startswith("s3://"):
            self.bucket, _, self.prefix = url[len("s3://"):].partition("/")
        else:
            self.root = Path(url)

    def keys(self, under: str) -> list[str]:
        if self.s3 is None:
            base = self.root / under
            return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()) if base.exists() else []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{under}")
        return sorted(o["Key"][len(self.prefix) + 1:] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        if self.s3 is None:
            return (self.root / key).read_bytes()
        return self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        if self.s3 is None:
            (self.root / key).write_bytes(data)
        else:
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def manifest_keys(self) -> dict[str, str]:
        """Backup id -> the key of its manifest."""
        return {m.group(1): key for key in self.keys("backups/") if (m := _MANIFEST_KEY.fullmatch(key))}

    def backup_ids(self) -> list[str]:
        return sorted(self.manifest_keys())

    def key(self):
        """The repository's unlocked key (None when unencrypted), from config.json and keys/ read
        here with the suite's passphrase: the objects stay read directly, only decrypted."""
        if not hasattr(self, "_key"):
            from qilbee_backup.crypto import RepoKey, find_password, unwrap_master_key

            config = json.loads(self.read("config.json"))
            self._key = None
            for key_file in self.keys("keys/") if config.get("encryption") else []:
                master = unwrap_master_key(json.loads(self.read(key_file)), find_password(), config["id"])
                if master is not None:
                    self._key = RepoKey(master)
            assert self._key is not None or not config.get("encryption"), "the suite's passphrase opens no key"
        return self._key

    def blob_key(self, sha: str) -> str:
        """Where a content's blob is: its SHA-256, or its keyed id in an encrypted repository."""
        blob = self.key().blob_id(sha) if self.key() is not None else sha
        return f"blobs/{blob[:2]}/{blob}"

    def manifest(self, backup_id: str) -> dict | None:
        from qilbee_backup.errors import IntegrityError

        try:
            data = self.read(self.manifest_keys()[backup_id])
            return json.loads(self.key().open(data, f"manifest:{backup_id}") if self.key() is not None else data)
        except (ValueError, IntegrityError):
            return None


# -- the invariants --------------------------------------------------------------------------


def check_repository(cli: Cli, trial: Trial, repo: RawRepo, damaged: set[str] = frozenset()) -> set[str] | None:
    """Without faults, `verify --read-data` fails (exit 1) exactly when some listed backup is damaged,
    names every damaged one and passes every other one. Returns the backups it called damaged (None: no report)."""
    listed = repo.backup_ids()
    damaged = set(damaged) & set(listed)
    run = cli("verify", "--repo", repo.url, "--read-data", "--json")
    trial.contract(run)
    trial.check(run.code == (1 if damaged else 0), f"{run} -- expected exit {1 if damaged else 0}"
                + (f" for damaged {sorted(damaged)}" if damaged else f" for {len(listed)} intact backups"))
    said = run.stdout + run.error_line
    unnamed = sorted(b for b in damaged if b not in said)
    trial.check(not unnamed, f"verify --read-data did not name damaged backup(s) {unnamed}: {run.error_line[:200]}")
    report = run.result()
    if not trial.check(isinstance(report, dict), f"verify --read-data gave no per-backup report: {run.error_line[:300]}"):
        return None
    verdicts = {b["backup_id"]: b for b in report.get("backups", [])}
    for backup_id in listed:
        got = verdicts.get(backup_id)
        if trial.check(got is not None, f"verify --read-data left out backup {backup_id}"):
            said = "intact" if got["ok"] else "damaged" if got.get("problems") else "not checked"
            trial.check(said == ("damaged" if backup_id in damaged else "intact"),
                        f"verify --read-data says backup {backup_id} is {said}, it is "
                        f"{'damaged' if backup_id in damaged else 'intact'}: {'; '.join(got.get('problems') or got.get('unchecked') or [])[:300]}")
    return {b for b, verdict in verdicts.items() if verdict.get("problems")}


def tree(root: Path) -> dict[str, str] | None:
    """Every file under root by relative path -> SHA-256; None when root does not exist."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def check_restore(trial: Trial, run: Run, target: Path, snapshot: Path) -> None:
    """A restore that said it succeeded put exactly the snapshot's files, byte for byte, in target."""
    trial.contract(run)
    if trial.check(run.code == 0, f"{run} -- the restore should have succeeded"):
        got, want = tree(target), tree(snapshot)
        wrong = sorted(set(got or {}) ^ set(want) | {p for p in set(got or {}) & set(want) if got[p] != want[p]})
        trial.check(got == want, f"restore into {target.name} differs from snapshot {snapshot.name}: {wrong[:5]}")


def leftovers(target: Path, before: set[str]) -> list[str]:
    """What a restore left beside target: new names in its parent other than target and an empty *.lock file."""
    parent = target.parent
    return sorted(name for name in set(os.listdir(parent)) - before - {target.name}
                  if not (name.endswith(".lock") and (parent / name).stat().st_size == 0))
