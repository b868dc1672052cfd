"""Input checks made before any work: the seed, a folder to write in (a folder, creatable,
writable, with room), the data root. Each failure is one :class:`UserError` naming the option
or path and what was expected. Config values are checked by meaning in
``benchmark.harness.config.validate``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from benchmark.core.errors import UserError

MIB = 2**20


def check_seed(seed: int, what: str = "--seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"{what} must be an integer in 0..{2**32 - 1}; got {seed!r}")
    return seed


def check_out_dir(path: str | os.PathLike, need_bytes: int = 0, what: str = "--out",
                  create: bool = True) -> Path:
    """``path`` is (or can be made) a writable folder with ``need_bytes`` free. ``create``
    false: a missing folder is not made now (a command that may still refuse its input leaves
    nothing behind); its nearest existing parent must be a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; expected a folder")
    if not create and not path.exists():
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path} cannot be created: {parent} is not a writable "
                            "folder")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be created: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=path) as fh:
            fh.write(b"x")
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable: {exc.strerror or exc}") from None
    if need_bytes:
        free = shutil.disk_usage(path).free
        if free < need_bytes:
            raise UserError(f"{what} {path}: {free / MIB:.0f} MiB free, this needs about "
                            f"{need_bytes / MIB:.0f} MiB (a checkpoint, its temp copy and the "
                            "record); free some space or choose another folder")
    return path


def check_parent_writable(path: str | os.PathLike, what: str) -> Path:
    """A file's folder exists or can be made, and is writable; the file is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; expected a file name")
    check_out_dir(path.parent if str(path.parent) else Path("."), what=f"{what}'s folder")
    return path


def check_data_root(data_root: str | None, dataset: str, needs_root: bool,
                    folder: str | None = None) -> None:
    """The data root exists and holds ``folder`` (the dataset's folder), else one line naming
    the option, the environment variable and the generated route."""
    if not needs_root:
        return
    like = folder or dataset
    where = (" (from $MLRBENCH_DATA)" if os.environ.get("MLRBENCH_DATA") == data_root else
             " (the default ./data; set --data-root or $MLRBENCH_DATA)" if data_root == "data"
             else "")
    routes = (f"point --data-root (or $MLRBENCH_DATA) at the folder holding {like}/, or try the "
              f"suite without the real data: python -m benchmark synth --like {like} --root "
              f"{data_root or 'data'} writes a generated stand-in there")
    if not data_root:
        raise UserError(f"dataset '{dataset}' needs --data-root (or $MLRBENCH_DATA); "
                        f"{routes}")
    root = Path(data_root)
    if not root.exists():
        raise UserError(f"dataset '{dataset}': --data-root {root}{where} does not exist; "
                        f"{routes}")
    if not root.is_dir():
        raise UserError(f"--data-root {root} is a file; expected a folder")
    if folder and not (root / folder).is_dir():
        raise UserError(f"dataset '{dataset}': no folder {root / folder} under --data-root "
                        f"{root}{where}; {routes}")
