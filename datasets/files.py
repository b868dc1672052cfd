"""Finding and reading dataset files, with errors that say what was expected and how to fix it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.core.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def synth_hint(like: str) -> str:
    return (f"to try the suite without the real data, write a generated stand-in with: "
            f"python -m benchmark synth --like {like} --root DIR")


def first_existing(candidates: Iterable[Path], what: str, like: str, data_root: str | Path
                   ) -> Path:
    """The first candidate folder/file that exists, else a UserError listing every layout."""
    candidates = list(candidates)
    for c in candidates:
        if c.exists():
            return c
    root = Path(data_root)
    where = "" if root.is_dir() else f" (the data root {root} does not exist)"
    expected = " or ".join(str(c) for c in candidates)
    raise UserError(f"{what} not found{where}: expected {expected}; {synth_hint(like)}")


def list_images(folder: Path, like: str, exts: tuple[str, ...] = IMAGE_EXTS) -> list[Path]:
    """Image files of a folder, sorted; a missing or image-less folder is an error."""
    if not folder.is_dir():
        raise UserError(f"folder {folder} is missing; {synth_hint(like)}")
    named = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
    # a link that leads nowhere (dangling, or a loop) is named, never dropped: the protocol
    # would change without a word
    broken = [p for p in named if p.is_symlink() and not p.exists()]
    if broken:
        shown = ", ".join(str(b) for b in broken[:3])
        raise UserError(f"{len(broken)} image name(s) in {folder} are links that lead to no file "
                        f"(dangling or looping), e.g. {shown}; fix or remove them")
    files = [p for p in named if p.is_file()]
    if not files:
        raise UserError(f"folder {folder} holds no images (expected {', '.join(exts)} files); "
                        f"{synth_hint(like)}")
    return files


def parse_names(files: list[Path], pattern: str, describe: str,
                convert: Callable[[re.Match], tuple[int, int]]) -> list[tuple[Path, int, int]]:
    """Match every file name against ``pattern``; names that do not parse are an error that shows
    the first few (a silent drop would change the protocol)."""
    regex = re.compile(pattern)
    out, bad = [], []
    for f in files:
        m = regex.fullmatch(f.name)
        if m is None:
            bad.append(f)
        else:
            out.append((f, *convert(m)))
    if bad:
        shown = ", ".join(str(b) for b in bad[:3])
        raise UserError(f"{len(bad)} file names in {bad[0].parent} do not parse as {describe} "
                        f"(e.g. {shown})")
    return out


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3). Errors carry the file name."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))
