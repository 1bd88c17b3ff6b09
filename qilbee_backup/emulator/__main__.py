"""``python -m qilbee_backup.emulator --data-dir DIR …``: run the QilbeeDB emulator."""

from __future__ import annotations

import sys

from .cli import OneLineParser, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m qilbee_backup.emulator",
        description="A QilbeeDB-compatible HTTP server on RocksDB, with the guide's snapshot API.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
