"""Torch files read safely: the weights-only unpickler (tensors and plain data), so reading a
received checkpoint, kept model or weight file cannot run code."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from benchmark.core.errors import UnsafeFileError, UserError


def load_torch(path: str | os.PathLike, what: str, map_location: Any = "cpu",
               mmap: bool = False) -> Any:
    """A torch file read with the weights-only unpickler (tensors and plain data: dicts, lists,
    numbers, strings), so reading it cannot run code. A file that needs more is refused with one
    line; one that cannot be read (truncated, not a torch file) is a UserError naming it.
    ``mmap``: map the tensors instead of reading them (cheap: check the file's identity first)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a {what} (give the file)")
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not (mmap and "mmap" in str(exc)):
                raise
            # a file in torch's legacy (pre-1.6, not zip) format cannot be mapped: read it
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        named = f" ({found.group(1)})" if found else ""
        raise UnsafeFileError(
            f"{path}: {what} holds Python objects beyond tensors and plain data{named}, which "
            "loading could run as code; refused. If you trust its source, load it in code of "
            "your own with torch's full unpickler, torch.save its state dict alone, and give "
            "that file") from None
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: {what} cannot be read ({first}); it may be truncated or not a "
                        "torch file") from None
