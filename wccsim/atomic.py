"""Atomic file output: write to a temporary file in the destination directory, fsync, then `os.replace`.

A reader never sees a half-written file, and a pre-existing file is left byte-identical if the writer
fails or is killed before the rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from wccsim.errors import InputError

__all__ = ["atomic_path", "ensure_dir", "write_bytes", "write_text"]


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create directory `path` (and parents) if missing; a path blocked by a regular file, or a directory
    that cannot be created or written, is a one-line `InputError` naming it. Returns the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(str(path), "", "an output directory (or a path where one can be created)",
                         "a regular file in the way") from None
    except OSError as e:
        raise InputError(str(path), "", "a writable output directory", e.strerror or type(e).__name__) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(str(path), "", "a writable output directory", "no write permission")
    return path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it is renamed onto `dest`, on error removed."""
    dest = Path(dest)
    ensure_dir(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, _default_mode(dest))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _default_mode(dest: Path) -> int:
    """Mode for the new file: the existing file's, else 0o666 less the umask (mkstemp would give 0o600)."""
    try:
        return dest.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `dest` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `dest` atomically."""
    write_bytes(dest, text.encode("utf-8"))
