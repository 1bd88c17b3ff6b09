"""Shared test setup: PREFECT_HOME in a temp dir before Prefect is imported; fixtures from tests/plugins."""

import os
import tempfile

# Prefect reads PREFECT_HOME at import: point it at a throwaway directory first.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="qilbee-prefect-home-"))
# New repositories are encrypted (the product's default): every test that makes one through the CLI
# or a flow uses this passphrase, as an operator's environment would hold one. Tests of the
# unencrypted format say so (--insecure-no-encryption, or the engine's Repository without a key).
TEST_PASSWORD = "correct horse battery staple (tests)"
os.environ["QILBEE_PASSWORD"] = TEST_PASSWORD

pytest_plugins = [
    "tests.plugins.emulator",
    "tests.plugins.s3",
    "tests.plugins.s3_faults",
    "tests.plugins.prefect",
    "tests.plugins.docker",
    "tests.plugins.throttle",
    "tests.plugins.bind",
    "tests.plugins.postgres",
]


def pytest_terminal_summary(terminalreporter):
    """A run that skipped anything says so in its last lines: how many, and why (grouped)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.write_sep("=", f"{len(skipped)} skipped", yellow=True)
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{count:4d}  {reason}")
