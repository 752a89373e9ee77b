"""Owner-only files: the SQLite database (and so its WAL and SHM, which SQLite creates
with the database file's permissions), lock files, the alert and error logs.

Files are created 0600 and missing folders 0700 whatever the umask; existing files keep
the mode their owner gave them (tightening them is the operator's decision)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Literal

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents 0700 (existing folders are left alone)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask


def touch_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist yet (its folder must)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.fchmod(fd, FILE_MODE)  # os.open's mode is filtered by the umask too
    os.close(fd)


def private_file(path: Path, mode: Literal["a", "a+"] = "a") -> IO[str]:
    """Open ``path`` for appending, creating it 0600 (and its folders 0700) if new."""
    private_dir(path.parent)
    touch_private(path)
    return path.open(mode, encoding="utf-8")
