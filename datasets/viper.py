"""VIPeR: ``viper/VIPeR/{cam_a,cam_b}/*.bmp`` (``000_45.bmp`` = index, viewpoint angle).

The sorted ``cam_a`` and ``cam_b`` lists pair by position: 632 identities, one 128x48 image per
camera each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.core.errors import UserError
from benchmark.core.options import Option
from datasets.base import DatasetSpec, MLRData, Sample, draw_rates, register_dataset
from datasets.files import first_existing, list_images, parse_names
from datasets.protocols import (
    check_trial,
    data_root_path,
    file_loader,
    generated_info,
    mark_lr,
    protocol_info,
    rel_key,
    split_ids,
)

NAME = r"(\d{3})_(\d+)\.bmp"
PUBLISHED = {"ids": 632}
IMAGE_SIZE = (128, 48)
#: the ``data.viper`` config section
OPTIONS = {"trials": Option(10, "random 316/316 splits", low=1)}


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


# -- the MLR protocol ---------------------------------------------------------------------------
def build_mlr_viper(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = data_root_path(data_root, "mlr-viper")
    samples = parse(root)
    trials = int(cfg["data"]["viper"]["trials"])
    k = check_trial(cfg, trials, "mlr-viper")
    ids = sorted({s.pid for s in samples})
    train_ids, test_ids = split_ids(ids, len(ids) // 2, int(cfg["data"]["seed"]), 72, k)
    lr_keys = [rel_key(s.source, root) for s in samples if s.camid == 0]
    rates = draw_rates(lr_keys, cfg["data"]["rates"], int(cfg["data"]["seed"]), salt=63)
    samples = mark_lr(samples, 0, rates, root)
    test = set(test_ids)
    train = [s for s in samples if s.pid not in test]
    query = [s for s in samples if s.pid in test and s.is_lr]
    gallery = [s for s in samples if s.pid in test and not s.is_lr]
    info = protocol_info("MLR-VIPeR (SING)", "cam_a", rates, cfg, k, trials, "single-shot",
                         train_ids, test_ids, generated_info(root / "viper"),
                         measured={"ids": len(ids)})
    return MLRData("mlr-viper", train, query, gallery, file_loader, info, root=root)


register_dataset(DatasetSpec(
    name="mlr-viper",
    description="MLR-VIPeR: cam_a down-sampled (r in {2,3,4}), random 316/316 ids per trial, "
                "10 trials",
    build=build_mlr_viper, paper_name="MLR-VIPeR (MLR-V)", folder="viper",
    write_stand_in=write_synthetic, config_section="viper", options=OPTIONS,
    published=PUBLISHED,
    train_images=632))  # 316 ids x 2 cameras
