"""Atomic file output: write to a temporary file in the destination directory, fsync, then `os.replace`.

A reader never sees a half-written file, and a pre-existing file is left byte-identical if the writer
fails or is killed before the rename. Every `OSError` met while writing (disk full, read-only file system,
no permission, a device or a directory in the way, /proc, /sys) is a one-line `InputError` naming the path
and the system's reason (`write_errors`), so the CLI exits 2 instead of reporting an internal error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from wccsim.errors import InputError

__all__ = ["atomic_path", "check_output_dir", "check_output_file", "ensure_dir", "write_bytes", "write_errors",
           "write_text"]


@contextlib.contextmanager
def write_errors(path: str | os.PathLike, expected: str = "a writable location") -> Iterator[None]:
    """Turn an `OSError` raised inside the block into a one-line `InputError` naming `path` and the
    system's reason, e.g. ``out/layers.csv: expected a writable location, got No space left on device
    (ENOSPC)``."""
    try:
        yield
    except OSError as e:
        raise InputError(str(path), "", expected, _reason(e)) from None


def check_output_dir(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output directory that could not be created or written: its nearest
    existing ancestor must be a directory in which a file can be created (tried, then removed; an
    `os.access` check would pass for root on a read-only mount or /proc). Creates nothing. Returns `path`."""
    path = Path(path)
    existing = path.absolute()
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(str(existing), "", "an output directory (or a path where one can be created)",
                         f"{_kind(existing)} in the way")
    _probe(existing)
    return path


def check_output_file(path: str | os.PathLike) -> Path:
    """As `check_output_dir` for a file to be written atomically: `path`, if it exists, must be a regular
    file (a device, FIFO or directory is never replaced) and its directory writable. Returns `path`."""
    path = _regular_or_new(Path(path))
    check_output_dir(path.parent)
    return path


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create directory `path` (and parents) if missing and check that a file can be created in it; a
    path blocked by a file or device, or a directory that cannot be created or written, is a one-line
    `InputError` naming it. Returns the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if os.path.lexists(p) and not p.is_dir()), path)
        raise InputError(str(blocker), "", "an output directory (or a path where one can be created)",
                         f"{_kind(blocker)} in the way") from None
    except OSError as e:
        raise InputError(str(path), "", "a writable output directory", _reason(e)) from None
    _probe(path)
    return path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it is renamed onto `dest`, on error removed.
    An `OSError` while the caller writes it, syncs or renames it is a one-line `InputError` naming `dest`."""
    dest = _regular_or_new(Path(dest))
    ensure_dir(dest.parent)
    with write_errors(dest):
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
        os.close(fd)
    tmp = Path(tmp)
    try:
        with write_errors(dest):
            os.chmod(tmp, _default_mode(dest))
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):  # renamed (gone), or a cleanup failing after the reported error
            tmp.unlink()


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `dest` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `dest` atomically."""
    write_bytes(dest, text.encode("utf-8"))


def _probe(directory: Path) -> None:
    """Create and remove a temporary file in `directory`; an `OSError` is the one-line `InputError`."""
    with write_errors(directory, "a writable output directory"):
        fd, name = tempfile.mkstemp(prefix=".wccsim-probe.", dir=directory)
        os.close(fd)
        os.unlink(name)


def _regular_or_new(path: Path) -> Path:
    """`path`, unless something other than a regular file is there (never replaced by a rename)."""
    if os.path.lexists(path) and not path.is_file():
        raise InputError(str(path), "", "a regular file or a new file name", _kind(path))
    return path


def _reason(e: OSError) -> str:
    """The system's words for `e`, with the errno name: ``Read-only file system (EROFS)``."""
    name = errno.errorcode.get(e.errno, "") if e.errno is not None else ""
    text = e.strerror or type(e).__name__
    return f"{text} ({name})" if name else text


def _kind(path: Path) -> str:
    """What sits at `path` (through a symlink), in words: a regular file, a directory, a character device."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = os.lstat(path).st_mode
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a broken symlink")):
        if test(mode):
            return words
    return "a special file"


def _default_mode(dest: Path) -> int:
    """Mode for the new file: the existing file's, else 0o666 less the umask (mkstemp would give 0o600)."""
    try:
        return dest.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
