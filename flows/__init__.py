"""Orchestration: which tasks, in what order, with what on failure. Importing any flow installs the
run-log filter, in the CLI, a worker and `serve` alike."""

from flows import run_logs

run_logs.install()
