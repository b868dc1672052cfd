"""Checks made before any image is decoded or any step taken: the seed, output folders (a
folder, creatable, writable, with room for what the run writes), the data root. Each failure is
one :class:`UserError` naming the option or path and what was expected. Config values are
checked by meaning in ``benchmark.config.validate``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from benchmark.errors import UserError

MIB = 2**20
#: room a record, its temp copy and a report need beyond checkpoints
RECORD_BYTES = 4 * MIB


def check_seed(seed: int, what: str = "--seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"{what} must be an integer in 0..{2**32 - 1}; got {seed!r}")
    return seed


def check_out_dir(path: str | os.PathLike, need_bytes: int = 0, what: str = "--out") -> Path:
    """``path`` is (or can be made) a writable folder with ``need_bytes`` free."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; expected a folder")
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


#: the folders a results folder holds besides its records
RESULTS_SUBFOLDERS = (".checkpoints", "logs", ".submitit")


def check_results_folder(path: str | os.PathLike, what: str = "--out",
                         writable: bool = True) -> Path:
    """A results folder: writable (when ``writable``), and the folders the suite keeps in it
    (checkpoints and locks, cell logs, Slurm's job files) are folders where they exist, not
    files."""
    path = check_out_dir(path, what=what) if writable else Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; expected a folder")
    for name in RESULTS_SUBFOLDERS:
        sub = path / name
        if sub.exists() and not sub.is_dir():
            raise UserError(f"{what} {path}: {sub} is a file, but the suite keeps its "
                            f"{'checkpoints and run locks' if name == '.checkpoints' else name} "
                            "in a folder of that name; move the file away")
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


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Bytes of a checkpoint: the weights and buffers, and Adam's two moments per trainable
    weight (the optimizer the suite uses; SGD's momentum needs less)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return weights + buffers + 2 * trainable
