"""Small file helpers the backup and restore tests share."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write data to path (parents made) with these permission bits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: relative path -> (SHA-256 of its bytes, permission bits); links refused."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            assert not os.path.islink(os.path.join(dirpath, name))
        for name in filenames:
            path = Path(dirpath) / name
            found[path.relative_to(root).as_posix()] = (
                hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(path.stat().st_mode))
    return found
