"""Moved to the qilbee_cli package (the command line sits above the flows, never inside the engine).
Kept only so `python -m qilbee_backup.cli` keeps working for scripts written against it."""

import sys

if __name__ == "__main__":
    from qilbee_cli.main import main

    sys.exit(main())
