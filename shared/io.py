"""Atomic file writes: a reader never sees a half-written checkpoint, result or cache entry.

Each writer writes to a temporary file in the destination folder, flushes and fsyncs it, then renames it over
the target (``os.replace`` is atomic on POSIX and Windows for files on one file system). Also the error type of
the readers' side, ``UnreadableRecord``, so that every command can offer the same way out (skip such records).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

# mkstemp creates 0600 files; give results the permissions a plain open() would (0666 minus the umask)
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

__all__ = ["UnreadableRecord", "OutputBusy", "exclusive_output", "write_cache", "atomic_write", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_json", "atomic_torch_save"]


class UnreadableRecord(ValueError):
    """One record of an input file (a molecule, a frame, a structure) cannot be read; the others may be. The
    message names the file, the record and the line or row; commands offer ``--skip-unreadable`` for it."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # write()/fsync() failures (disk full) carry no path: name the file the user asked for
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def write_cache(path: str | os.PathLike, write: Callable[[Path], Any], what: str = "cache") -> bool:
    """Run ``write(path)`` for a cache file; an OSError (read-only, disk full, ...) becomes a warning that names
    the path and the reason, because a cache saves time and never decides a result. True when written."""
    try:
        write(Path(path))
    except OSError as exc:
        import warnings

        warnings.warn(f"could not write the {what} {path} ({exc.strerror or exc}); continuing without it "
                      f"(set $SCOREGEN_CACHE or the command's cache option to a writable folder)", stacklevel=2)
        return False
    return True


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda handle: torch.save(obj, handle))


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars and arrays, paths: the usual things results contain
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def split_sdf_records(text: str) -> list[tuple[int, str]]:
    """``(first line, text)`` of each record of an SDF file (lines counted from 1), split at ``$$$$`` lines.

    Split here rather than by RDKit's suppliers: after a broken record they resynchronise past the *next*
    ``$$$$`` and so silently drop the good molecule that follows. A last record without ``$$$$`` (a MOL file)
    is kept; trailing blank lines are not a record.
    """
    records, current, start = [], [], 1
    for number, line in enumerate(text.splitlines(), start=1):
        current.append(line)
        if line.strip() == "$$$$":
            records.append((start, "\n".join(current) + "\n"))
            current, start = [], number + 1
    if any(line.strip() for line in current):
        records.append((start, "\n".join(current) + "\n"))
    return records


class OutputBusy(ValueError):
    """Another process is writing the same output (a user error: one exit-2 line, nothing overwritten)."""


@contextlib.contextmanager
def exclusive_output(path: str | os.PathLike, what: str = "command") -> Iterator[Path]:
    """Hold an exclusive lock on the output ``path`` (a file or a folder) for the body; a second process asking for
    the same output is refused at once with :class:`OutputBusy` instead of mixing its results into the first's.

    The lock is a file in ``$TMPDIR/scoregen-locks-<uid>`` named by a hash of the output's absolute path (nothing is
    created beside the output), taken with ``flock``: the system releases it even when the holder is killed, so a
    stale lock never blocks. Processes on other machines sharing a network folder are not covered; where ``fcntl``
    is missing (Windows) nothing is locked.
    """
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    import hashlib

    folder = Path(tempfile.gettempdir()) / f"scoregen-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    key = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
    lock_path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            raise OutputBusy(f"{path} is being written by another {what} ({owner or 'another process'}); wait for "
                             f"it to finish or choose another output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield path
        finally:
            lock_path.unlink(missing_ok=True)  # while still holding it: a waiter then finds no stale file
    finally:
        handle.close()
