"""`synthetic`: a generated two-camera MLR dataset (camera 0 HR, camera 1 LR).

Camera 1's images are made by the generator at full size and then down-sampled by a rate r
drawn per image from ``data.rates`` (recorded), exactly as MLR-CUHK03/VIPeR/Market build their
LR camera. Train and test identities are disjoint. Query: LR images of the test identities;
gallery: HR images of the test identities. Metric: all gallery images, same pid and camera
removed (the Market metric). Results from it are labelled generated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.core.errors import UserError
from benchmark.core.options import Option
from datasets.base import DatasetSpec, MLRData, Sample, draw_rates, register_dataset
from datasets.generator import GENERATOR_VERSION, PersonGenerator

HR_CAMERA, LR_CAMERA = 0, 1

#: the ``data.synthetic`` config section
OPTIONS = {
    "train_ids": Option(300, "training identities", low=2),
    "test_ids": Option(100, "test identities", low=1),
    "images_per_camera": Option(8, "per identity and camera", low=1),
    "image_size": Option([256, 128], "native size of generated HR crops [height, width]", low=8),
}


def _key(pid: int, cam: int, index: int) -> str:
    return f"gen:{pid}:{cam}:{index}"


def build_synthetic(cfg: dict[str, Any], data_root: str | None = None) -> MLRData:
    d = cfg["data"]
    s = d["synthetic"]
    seed = int(d["seed"])
    if len(s["image_size"]) != 2:
        raise UserError(f"config 'data.synthetic.image_size' must be [height, width]; got "
                        f"{s['image_size']}")
    h, w = (int(v) for v in s["image_size"])
    gen = PersonGenerator(seed, h, w, num_cameras=2)
    n_train, n_test, per_cam = int(s["train_ids"]), int(s["test_ids"]), int(s["images_per_camera"])
    lr_keys = [_key(p, LR_CAMERA, i) for p in range(n_train + n_test) for i in range(per_cam)]
    rates = draw_rates(lr_keys, [int(r) for r in d["rates"]], seed)

    def samples(pids: range, cams: tuple[int, ...]) -> list[Sample]:
        out = []
        for p in pids:
            for c in cams:
                for i in range(per_cam):
                    k = _key(p, c, i)
                    lr = c == LR_CAMERA
                    out.append(Sample(k, p, c, rate=rates[k] if lr else 1, is_lr=lr))
        return out

    train = samples(range(n_train), (HR_CAMERA, LR_CAMERA))
    test_ids = range(n_train, n_train + n_test)
    query = samples(test_ids, (LR_CAMERA,))
    gallery = samples(test_ids, (HR_CAMERA,))

    def load(sample: Sample) -> np.ndarray:
        _, pid, cam, index = sample.source.split(":")
        return gen.render(int(pid), int(cam), int(index))

    info = {
        "generated": True,
        "protocol": "synthetic two-camera MLR",
        "lr_camera": LR_CAMERA,
        "hr_camera": HR_CAMERA,
        "rates": [int(r) for r in d["rates"]],
        "lr_rates": rates,
        "native_size": [h, w],
        "metric": "market",
        "trials": 1,
        "trial": 0,
        "train_ids": list(range(n_train)),
        "test_ids": list(test_ids),
    }
    identity = {"generator": "datasets.generator.PersonGenerator",
                "generator_version": GENERATOR_VERSION, "seed": seed, "image_size": [h, w]}
    return MLRData("synthetic", train, query, gallery, load, info, identity=identity)


register_dataset(DatasetSpec(
    name="synthetic",
    description="generated people, camera 0 HR / camera 1 LR (r in {2,3,4}); no files needed",
    build=build_synthetic, config_section="synthetic", options=OPTIONS,
    # both cameras of every training identity (the samples() of build_synthetic)
    train_images_of=lambda cfg: (2 * int(cfg["data"]["synthetic"]["train_ids"])
                                 * int(cfg["data"]["synthetic"]["images_per_camera"]))))
