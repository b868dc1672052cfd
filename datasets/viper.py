"""VIPeR: ``viper/VIPeR/{cam_a,cam_b}/*.bmp`` (``000_45.bmp`` = index, viewpoint angle).

The sorted ``cam_a`` and ``cam_b`` lists pair by position: 632 identities, one 128x48 image per
camera each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.errors import UserError
from datasets.base import Sample
from datasets.files import first_existing, list_images, parse_names

NAME = r"(\d{3})_(\d+)\.bmp"
PUBLISHED = {"ids": 632}
IMAGE_SIZE = (128, 48)


def parse(data_root: str | Path) -> list[Sample]:
    base = first_existing([Path(data_root) / "viper" / "VIPeR"], "VIPeR folder", "viper",
                          data_root)
    lists = []
    for cam in ("cam_a", "cam_b"):
        files = list_images(base / cam, "viper", (".bmp",))
        parse_names(files, NAME, "VIPeR names like 000_45.bmp (index, angle)",
                    lambda m: (int(m.group(1)), int(m.group(2))))
        lists.append(files)
    a, b = lists
    if len(a) != len(b):
        raise UserError(f"VIPeR pairs cam_a and cam_b by position: {base / 'cam_a'} has {len(a)} "
                        f"images but {base / 'cam_b'} has {len(b)}")
    return ([Sample(str(f), pid, 0) for pid, f in enumerate(a)]
            + [Sample(str(f), pid, 1) for pid, f in enumerate(b)])


def write_synthetic(root: str | Path, ids: int = 24, full_size: bool = False, seed: int = 0
                    ) -> dict[str, int]:
    """Write ``viper/VIPeR/cam_a|cam_b/NNN_ANGLE.bmp`` (128x48); 632 ids with ``full_size``."""
    from datasets.generator import PersonGenerator

    n = PUBLISHED["ids"] if full_size else ids
    gen = PersonGenerator(seed, *IMAGE_SIZE, num_cameras=2)
    rng = np.random.default_rng([seed, 41])
    base = Path(root) / "viper" / "VIPeR"
    for c, cam in enumerate(("cam_a", "cam_b")):
        (base / cam).mkdir(parents=True, exist_ok=True)
        for pid in range(n):
            angle = int(rng.choice([0, 45, 90, 135, 180]))
            Image.fromarray(gen.render(pid, c, 0)).save(base / cam / f"{pid:03d}_{angle}.bmp")
    return {"ids": n, "images": 2 * n}
