"""serve: every deployment of prefect.yaml, each on its schedule, from this one process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "serve"
HELP = "serve every deployment of prefect.yaml with its schedule from this process"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="the deployments file (default: the project's prefect.yaml)")
    p.add_argument("--only", action="append", metavar="NAME", help="serve only this deployment (repeatable)")


def run(given: dict[str, Any]) -> Any:
    from flows.serve import ROOT, serve_all

    serve_all(Path(given["config"]) if "config" in given else ROOT / "prefect.yaml", given.get("only"))
    return None
