"""The one way mlr-bench writes a file: atomically.

The content goes to a uniquely named temp file in the target's folder (so two processes never
share a temp name), is flushed and fsync'ed, then renamed over the target; a reader sees the old
file or the new one, never half of one. On any failure (a full disk, an interrupt) the temp file
is removed and the previous file is left as it was. Files are created with the permissions a
plain ``open()`` would give (0644 under the usual umask), not mkstemp's 0600.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from benchmark.core.errors import UnsafeFileError, WriteError

TEMP_SUFFIX = ".tmp"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_within(path: Path, within: str | os.PathLike) -> None:
    """``path`` must lie inside the folder ``within`` (both resolved, links followed)."""
    root = Path(within).resolve()
    target = path.resolve()
    try:
        target.relative_to(root)
    except ValueError:
        raise UnsafeFileError(f"refusing to write {path}: it lies outside {within}, the folder "
                              "this command writes in") from None


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any],
                 within: str | os.PathLike | None = None) -> Path:
    """Call ``write(binary file)`` on a temp file beside ``path``, then rename it to ``path``.

    ``within``: the folder the caller writes in; a ``path`` outside it (a name with ``..``, a
    link leading out) is refused before anything is created. A failure to write raises
    :class:`~benchmark.core.errors.WriteError` (an ``OSError``) naming the file."""
    path = Path(path)
    if within is not None:
        check_within(path, within)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes,
                within: str | os.PathLike | None = None) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), within)


def write_text(path: str | os.PathLike, text: str,
               within: str | os.PathLike | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), within)


def stale_temps(folder: str | os.PathLike, name: str) -> list[Path]:
    """Temp files an interrupted atomic write of ``folder/name`` left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []

    return sorted(folder.glob(f".{glob.escape(name)}.*{TEMP_SUFFIX}"))
