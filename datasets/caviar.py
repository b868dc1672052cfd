"""CAVIAR4REID: ``caviar/CAVIAR4REID/CAVIARa/PPPPNNN.jpg`` (or ``caviar/CAVIARa/``).

``PPPP`` is the 4-digit person id, ``NNN`` the image index 001..020: 001-010 are camera 0,
011-020 camera 1. 72 ids and 1,220 images: 50 ids have both cameras (20 images), 22 only
images 001-010. Camera 1 is genuinely low-resolution.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.core.errors import UserError
from benchmark.core.options import Option
from datasets.base import DatasetSpec, MLRData, Sample, register_dataset
from datasets.files import first_existing, list_images, parse_names
from datasets.protocols import (
    check_trial,
    data_root_path,
    file_loader,
    generated_info,
    protocol_info,
    split_ids,
)

NAME = r"(\d{4})(\d{3})\.jpg"
PUBLISHED = {"ids": 72, "images": 1220, "two_camera_ids": 50}
#: the ``data.caviar`` config section
OPTIONS = {"trials": Option(10, "random 25/25 splits of the two-camera ids", low=1)}


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


# -- the MLR protocol ---------------------------------------------------------------------------
def build_caviar(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = data_root_path(data_root, "caviar")
    samples = parse(root)
    c = cfg["data"]["caviar"]
    trials = int(c["trials"])
    k = check_trial(cfg, trials, "caviar")
    cams: dict[int, set[int]] = {}
    for s in samples:
        cams.setdefault(s.pid, set()).add(s.camid)
    both = sorted(p for p, cs in cams.items() if cs == {0, 1})
    if len(both) < 4:
        raise UserError(f"CAVIAR needs identities seen by both cameras (images 001-010 and "
                        f"011-020); found {len(both)} under {root / 'caviar'}")
    train_ids, test_ids = split_ids(both, len(both) // 2, int(cfg["data"]["seed"]), 73, k)
    samples = [replace(s, is_lr=True) if s.camid == 1 else s for s in samples]
    train_set, test_set = set(train_ids), set(test_ids)
    train = [s for s in samples if s.pid in train_set]
    query = [s for s in samples if s.pid in test_set and s.is_lr]
    gallery = [s for s in samples if s.pid in test_set and not s.is_lr]
    info = protocol_info("CAVIAR (SING)", "camera 1 (images 011-020), genuinely LR", {}, cfg, k,
                         trials, "single-shot", train_ids, test_ids,
                         generated_info(root / "caviar"), genuine_lr=True,
                         one_camera_ids=sorted(set(cams) - set(both)),
                         measured={"ids": len(cams), "images": len(samples),
                                   "two_camera_ids": len(both)})
    return MLRData("caviar", train, query, gallery, file_loader, info, root=root)


register_dataset(DatasetSpec(
    name="caviar",
    description="CAVIAR4REID: camera 1 genuinely LR, 25/25 of the 50 two-camera ids per trial, "
                "10 trials",
    build=build_caviar, paper_name="CAVIAR", folder="caviar", write_stand_in=write_synthetic,
    config_section="caviar", options=OPTIONS, published=PUBLISHED,
    train_images=500))  # 25 two-camera ids x 20 images
