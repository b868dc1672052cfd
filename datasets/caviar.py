"""CAVIAR4REID: ``caviar/CAVIAR4REID/CAVIARa/PPPPNNN.jpg`` (or ``caviar/CAVIARa/``).

``PPPP`` is the 4-digit person id, ``NNN`` the image index 001..020: 001-010 are camera 0,
011-020 camera 1. 72 ids and 1,220 images: 50 ids have both cameras (20 images), 22 only
images 001-010. Camera 1 is genuinely low-resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.errors import UserError
from datasets.base import Sample
from datasets.files import first_existing, list_images, parse_names

NAME = r"(\d{4})(\d{3})\.jpg"
PUBLISHED = {"ids": 72, "images": 1220, "two_camera_ids": 50}


def parse(data_root: str | Path) -> list[Sample]:
    base = Path(data_root) / "caviar"
    folder = first_existing([base / "CAVIAR4REID" / "CAVIARa", base / "CAVIARa"],
                            "CAVIAR4REID folder", "caviar", data_root)
    files = list_images(folder, "caviar", (".jpg", ".jpeg"))
    rows = parse_names(files, NAME, "CAVIAR4REID names like 0001001.jpg (4-digit id, index "
                       "001-020)", lambda m: (int(m.group(1)), int(m.group(2))))
    bad = [f for f, _, idx in rows if not 1 <= idx <= 20]
    if bad:
        raise UserError(f"{bad[0]}: CAVIAR4REID image indices run 001-020; got {bad[0].name}")
    return [Sample(str(f), pid, 0 if idx <= 10 else 1) for f, pid, idx in rows]


def write_synthetic(root: str | Path, ids: int = 24, full_size: bool = False, seed: int = 0
                    ) -> dict[str, int]:
    """Write ``caviar/CAVIAR4REID/CAVIARa/PPPPNNN.jpg``: camera 0 at 128x64-ish sizes, camera 1
    genuinely small (about 1/2 to 1/4 of that). ``full_size``: 72 ids, 50 with both cameras."""
    from datasets.generator import PersonGenerator

    n = PUBLISHED["ids"] if full_size else ids
    both = PUBLISHED["two_camera_ids"] if full_size else max(2, (n * 50) // 72)
    gen = PersonGenerator(seed, 128, 64, num_cameras=2)
    rng = np.random.default_rng([seed, 51])
    folder = Path(root) / "caviar" / "CAVIAR4REID" / "CAVIARa"
    folder.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(n)  # which ids have both cameras
    two_cam = set(order[:both].tolist())
    count = 0
    for pid in range(n):
        for idx in range(1, 21 if pid in two_cam else 11):
            cam = 0 if idx <= 10 else 1
            img = Image.fromarray(gen.render(pid, cam, idx))
            scale = rng.uniform(0.7, 1.0) if cam == 0 else 1.0 / rng.uniform(2.0, 4.0)
            img = img.resize((max(8, int(64 * scale)), max(16, int(128 * scale))),
                             Image.Resampling.BICUBIC)
            img.save(folder / f"{pid + 1:04d}{idx:03d}.jpg", quality=92)
            count += 1
    return {"ids": n, "images": count, "two_camera_ids": both}
