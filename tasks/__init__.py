"""Thin Prefect tasks: retries, timeouts, logging, artifacts. Importing any of them installs the
run-log set-up (engine logs into the run, expected errors in one line), in the CLI, a worker and
`serve` alike."""

from tasks import run_logs

run_logs.install()
