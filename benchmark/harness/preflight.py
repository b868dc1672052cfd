"""Checks made before a run's images are decoded: the results folder's layout and the room a
checkpoint needs (the input checks every command makes are ``benchmark.core.checks``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmark.core.checks import MIB, check_out_dir
from benchmark.core.errors import UserError

#: room a record, its temp copy and a report need beyond checkpoints
RECORD_BYTES = 4 * MIB


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


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Bytes of a checkpoint: the weights and buffers, and Adam's two moments per trainable
    weight (the optimizer the suite uses; SGD's momentum needs less)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return weights + buffers + 2 * trainable
