"""Shared test setup: PREFECT_HOME in a temp dir before Prefect is imported; fixtures from tests/plugins."""

import os
import tempfile

# Prefect reads PREFECT_HOME at import: point it at a throwaway directory first.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="qilbee-prefect-home-"))

pytest_plugins = [
    "tests.plugins.emulator",
    "tests.plugins.s3",
    "tests.plugins.prefect",
    "tests.plugins.docker",
    "tests.plugins.throttle",
    "tests.plugins.bind",
    "tests.plugins.postgres",
]
