"""Files that hold personal data or secrets: readable by their owner only
(0600), whatever the process's umask, from the moment they exist."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

PRIVATE = 0o600


def open_private(path: Path, mode: str = "wb") -> IO:
    """Open `path` for writing ("wb", "w", "ab", "a"), created 0600; an existing
    file is set to 0600 before anything is written to it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` at once (a reader sees the old or the new
    file, a crash leaves one of them), 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_private(tmp, "wb" if isinstance(data, bytes) else "w") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself
    finally:
        os.close(folder)
