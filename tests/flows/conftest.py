import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _prefect(prefect_harness):
    """Every flow test runs against the session's Prefect test server."""
    yield


@pytest.fixture
def cli_env(prefect_harness, tmp_path):
    """Environment for running the `qilbee-backup` CLI as a subprocess against the test Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.pop("QILBEE_API_KEY", None)
    return env


@pytest.fixture
def run_cli(cli_env):
    import subprocess

    def run(*args, env=None, timeout=180, **kw):
        return subprocess.run([sys.executable, "-m", "qilbee_cli", *args], env=env or cli_env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout, **kw)

    return run
