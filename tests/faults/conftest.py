"""Fixtures of the fault suite, its knobs, and the tally printed at the end of the run.

Knobs (environment variables), small by default so `make test` stays quick on 2 cores:
    QILBEE_FAULT_SEED       the random seed (default 9); every run prints it, so a failure can be replayed
    QILBEE_FAULT_ROUNDS     SIGKILLs per command: backup, restore, prune (default 1)
    QILBEE_FAULT_DAMAGE     blobs (of the S3 repository) and manifests (of the local one) given a flipped bit (default 2)
    QILBEE_FAULT_RATES      S3 fault rates through the proxy (default 0.1,0.3,0.5)
    QILBEE_FAULT_BACKUPS    backups through the faults per rate (default 1)

The seed fixes every choice the suite makes (which command is killed when, which files and bits are
flipped, which S3 requests fail); what depends on timing (where a kill lands, the order of parallel
requests) can still differ between two runs.

Each fault injected is a trial; a trial passes when every invariant held. The last lines of the run
say, per scenario, how many were tried and passed, then every broken invariant (one line each).
Run it alone with `.venv/bin/python -m pytest tests/faults -q`.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.faults.harness import Cli, RawRepo, Source, Tally
from tests.plugins.emulator import EmulatorProcess, free_port
from tests.plugins.prefect_server import prefect_server

SEED = int(os.environ.get("QILBEE_FAULT_SEED", "9"))
ROUNDS = int(os.environ.get("QILBEE_FAULT_ROUNDS", "1"))
DAMAGE = int(os.environ.get("QILBEE_FAULT_DAMAGE", "2"))
RATES = [float(r) for r in os.environ.get("QILBEE_FAULT_RATES", "0.1,0.3,0.5").split(",") if r.strip()]
BACKUPS = int(os.environ.get("QILBEE_FAULT_BACKUPS", "1"))
SOURCE_NODES = 20000  # ~3.3 MB of RocksDB files: big enough for a kill to land inside a transfer

TALLY = Tally()


@pytest.fixture
def rng(request) -> random.Random:
    """This test's random numbers: from the seed and the test's id, so each test replays on its own."""
    return random.Random(f"{SEED}:{request.node.nodeid}")


@pytest.fixture
def trials():
    """Record this test's trials in the tally; the test ends with trials.assert_all_passed()."""
    return TALLY.book()


@pytest.fixture
def repos(tmp_path, s3_client, s3_bucket) -> tuple[RawRepo, RawRepo]:
    """Two fresh repositories: a directory, and a prefix in a fresh bucket on moto_server."""
    return RawRepo(str(tmp_path / "repo")), RawRepo(f"s3://{s3_bucket}/repo", s3_client)


@pytest.fixture(scope="package")
def prefect_api(tmp_path_factory) -> str:
    """One real Prefect server for the suite: without one, every CLI command would start its own (10-20 s)."""
    with prefect_server(tmp_path_factory.mktemp("faults-prefect")) as url:
        yield url


@pytest.fixture(scope="package")
def source(tmp_path_factory) -> Source:
    """The emulator every backup is taken of, seeded once; tests add nodes so backups differ."""
    workdir = tmp_path_factory.mktemp("faults-source")
    port = free_port()
    server = EmulatorProcess(workdir / "data", port, ["--data-dir", str(workdir / "data"), "--host", "127.0.0.1",
                                                      "--port", str(port), "--seed-nodes", str(SOURCE_NODES)],
                             workdir / "emulator.log")
    server.start()
    try:
        yield Source(server.url, server.data_dir)
    finally:
        server.stop()


@pytest.fixture(scope="package")
def cli(prefect_api, tmp_path_factory) -> Cli:
    runner = Cli(prefect_api, tmp_path_factory.mktemp("faults-cli"))
    yield runner
    runner.reap()  # anything a killed command left running


def pytest_terminal_summary(terminalreporter):
    if not TALLY.rows:
        return
    terminalreporter.write_sep("=", f"fault suite: seed {SEED} (QILBEE_FAULT_SEED), rounds {ROUNDS}, damage {DAMAGE}, "
                                    f"rates {','.join(map(str, RATES))}, backups per rate {BACKUPS}")
    for line in TALLY.lines():
        terminalreporter.write_line(line)
