"""Market-1501: the original layout, and a generated stand-in written in it.

Layout: ``<root>/market1501/Market-1501-v15.09.15/{bounding_box_train,bounding_box_test,query}/``
(or the three folders directly under ``<root>/market1501/``). File names
``0002_c1s1_000451_03.jpg`` = person id, camera (1..6), sequence, frame, box. Person id -1 is
junk (skipped everywhere); 0000 is a distractor (kept in the gallery).
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
    data_root_path,
    file_loader,
    generated_info,
    mark_lr,
    protocol_info,
    rel_key,
)

NAME = r"(-?\d+)_c(\d)s\d+_\d+_\d+\.jpe?g"
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
PUBLISHED = {"train_ids": 751, "train_images": 12936, "query_images": 3368,
             "gallery_images": 15913}
IMAGE_SIZE = (128, 64)
NUM_CAMERAS = 6
#: the ``data.market1501`` config section
OPTIONS = {"lr_camera": Option(1, "the down-sampled camera, as in file names (c1; some papers "
                               "use c3)", low=1, high=NUM_CAMERAS)}


def find(data_root: str | Path) -> Path:
    base = Path(data_root) / "market1501"
    return first_existing([base / "Market-1501-v15.09.15" / SPLITS[0], base / SPLITS[0]],
                          "Market-1501 folder", "market1501", data_root).parent


def parse(data_root: str | Path) -> dict[str, list[Sample]]:
    """{split: images}, junk (-1) dropped, distractors (0) kept, cameras 0-based."""
    folder = find(data_root)
    out: dict[str, list[Sample]] = {}
    for split in SPLITS:
        files = list_images(folder / split, "market1501", (".jpg", ".jpeg"))
        rows = parse_names(files, NAME, "Market-1501 names like 0002_c1s1_000451_03.jpg",
                           lambda m: (int(m.group(1)), int(m.group(2))))
        images = []
        for path, pid, cam in rows:
            if pid == -1:
                continue
            if not 1 <= cam <= NUM_CAMERAS:
                raise UserError(f"{path}: camera c{cam} is outside Market-1501's c1..c6")
            images.append(Sample(str(path), pid, cam - 1))
        out[split] = images
    return out


def _spread(total: int, n: int) -> list[int]:
    """``total`` split into ``n`` near-equal positive parts."""
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def write_synthetic(root: str | Path, ids: int = 24, full_size: bool = False, seed: int = 0
                    ) -> dict[str, int]:
    """Write generated people in Market-1501's layout; return the counts written.

    ``full_size`` reproduces the published counts (751 train ids / 12,936 images; 750 test ids,
    3,368 query and 15,913 gallery images with 2,793 distractors, plus 3,819 junk images).
    """
    from datasets.generator import PersonGenerator

    rng = np.random.default_rng([seed, 21])
    gen = PersonGenerator(seed, *IMAGE_SIZE, num_cameras=NUM_CAMERAS)
    folder = Path(root) / "market1501" / "Market-1501-v15.09.15"
    for split in SPLITS:
        (folder / split).mkdir(parents=True, exist_ok=True)
    if full_size:
        n_train, n_test = 751, 750
        train_total, query_total, gallery_real = 12936, 3368, 13120
        distractors, junk = 2793, 3819
    else:
        n_train = n_test = ids
        train_total, query_total, gallery_real = 8 * ids, 4 * ids, 6 * ids
        distractors, junk = max(2, ids // 4), max(2, ids // 4)
    counter = {"n": 0}

    def save(split: str, pid: int, gen_pid: int, cam: int) -> None:
        counter["n"] += 1
        frame = counter["n"]
        img = gen.render(gen_pid, cam, frame)
        name = f"{pid:04d}_c{cam + 1}s{1 + frame % 6}_{frame:06d}_{1 + frame % 9:02d}.jpg"
        if pid < 0:
            name = "-1" + name[4:]
        Image.fromarray(img).save(folder / split / name, quality=92)

    def cameras(n: int) -> list[int]:
        return sorted(rng.choice(NUM_CAMERAS, size=n, replace=False).tolist())

    counts = {"train": 0, "query": 0, "gallery": 0, "junk": 0}
    for i, total in enumerate(_spread(train_total, n_train)):
        cams = cameras(int(rng.integers(2, 5)))
        for k in range(total):
            save("bounding_box_train", i + 1, i + 1, cams[k % len(cams)])
            counts["train"] += 1
    test_pids = range(n_train + 1, n_train + n_test + 1)
    for pid, n_query, n_gal in zip(test_pids, _spread(query_total, n_test),
                                   _spread(gallery_real, n_test)):
        cams = cameras(min(NUM_CAMERAS, max(2, n_query)))
        for k in range(n_query):  # one query per camera, like Market
            save("query", pid, pid, cams[k % len(cams)])
            counts["query"] += 1
        for k in range(n_gal):
            save("bounding_box_test", pid, pid, cams[(k + 1) % len(cams)])
            counts["gallery"] += 1
    for k in range(distractors):  # people seen once: distractors (0000)
        save("bounding_box_test", 0, 100_000 + k, int(rng.integers(NUM_CAMERAS)))
        counts["gallery"] += 1
    for k in range(junk):
        save("bounding_box_test", -1, 200_000 + k, int(rng.integers(NUM_CAMERAS)))
        counts["junk"] += 1
    return counts


# -- the MLR protocol ---------------------------------------------------------------------------
def build_mlr_market(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = data_root_path(data_root, "mlr-market1501")
    splits = parse(root)
    lr_cam = int(cfg["data"]["market1501"]["lr_camera"]) - 1
    if not 0 <= lr_cam < NUM_CAMERAS:
        raise UserError("config 'data.market1501.lr_camera' must be a camera 1..6; got "
                        f"{lr_cam + 1}")
    every = [s for split in splits.values() for s in split]
    lr_keys = [rel_key(s.source, root) for s in every if s.camid == lr_cam]
    rates = draw_rates(lr_keys, cfg["data"]["rates"], int(cfg["data"]["seed"]), salt=61)
    train = mark_lr(splits["bounding_box_train"], lr_cam, rates, root)
    test = mark_lr(splits["query"] + splits["bounding_box_test"], lr_cam, rates, root)
    query = [s for s in test if s.is_lr and s.pid > 0]
    gallery = [s for s in test if not s.is_lr]  # distractors (pid 0) kept, LR camera left out
    info = protocol_info("MLR-Market-1501 (SING)", f"c{lr_cam + 1}", rates, cfg, 0, 1, "market",
                         sorted({s.pid for s in train}), sorted({s.pid for s in query}),
                         generated_info(root / "market1501"),
                         original_counts={k: len(v) for k, v in splits.items()},
                         measured={"train_ids": len({s.pid for s in splits["bounding_box_train"]}),
                                   "train_images": len(splits["bounding_box_train"]),
                                   "query_images": len(splits["query"]),
                                   "gallery_images": len(splits["bounding_box_test"])})
    return MLRData("mlr-market1501", train, query, gallery, file_loader, info, root=root)


register_dataset(DatasetSpec(
    name="mlr-market1501",
    description="MLR-Market-1501: camera c1 down-sampled (r in {2,3,4}), LR c1 queries vs HR "
                "gallery, 751/750 ids",
    build=build_mlr_market, paper_name="MLR-Market-1501 (MLR-M)", folder="market1501",
    write_stand_in=write_synthetic, config_section="market1501", options=OPTIONS,
    published=PUBLISHED,
    train_images=12936))  # bounding_box_train
