"""Records, the dataset registry, trials, and the data fingerprint.

A dataset is one file (``market1501.py``, ``cuhk03.py``, ``viper.py``, ``caviar.py``,
``synthetic.py``) that registers one :class:`DatasetSpec`: its parser and protocol builder, the
writer of its generated stand-in (``synth --like``), its config section with declared options,
its published counts and its name in the paper. Everything else (CLI help, ``suite``,
``check-data``, reports) reads the registry.

A builder returns an :class:`MLRData`: train / query / gallery lists of :class:`Sample` and a
``load`` function giving a sample's native image. The protocol decides each sample's
down-sampling rate ``rate`` (1 = as captured) and resolution flag ``is_lr``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import UserError
from benchmark.core.options import Option
from benchmark.core.registry import Registry


@dataclass(frozen=True)
class Sample:
    """One image of a protocol.

    Attributes:
        source: where the native image comes from (a file path, or a generator key).
        pid: person id as in the original data (remapped to 0..C-1 for training only).
        camid: camera index, 0-based.
        rate: down-sampling rate applied by the protocol before resizing (1: none).
        is_lr: the image is low-resolution (down-sampled here, or genuinely LR), so it takes a
            method's LR path.
    """

    source: str
    pid: int
    camid: int
    rate: int = 1
    is_lr: bool = False

    def as_hr(self) -> Sample:
        """The same capture without protocol down-sampling (for the HR->HR control)."""
        return replace(self, rate=1, is_lr=False)


@dataclass
class MLRData:
    """A dataset under a protocol, one trial.

    ``info`` holds what a results record needs to repeat the run: the protocol, LR camera,
    rates drawn per LR image, split, trial, metric ("market" or "single-shot"), whether the
    images are generated. ``root`` is the folder the files were read from (None for images
    generated in memory); ``identity`` what else identifies the data beyond its files (the
    generator's parameters, or files such as CUHK03's .mat that samples index into).
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    load: Callable[[Sample], np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None
    identity: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "train_ids": len({s.pid for s in self.train}),
            "train_images": len(self.train),
            "query_ids": len({s.pid for s in self.query}),
            "query_images": len(self.query),
            "gallery_ids": len({s.pid for s in self.gallery}),
            "gallery_images": len(self.gallery),
        }


#: sample sources that are keys, not file paths: "gen:<pid>:<cam>:<index>" (images generated in
#: memory), "mat:<kind>:<pair>:<id>:<view>" (an image inside CUHK03's .mat)
KEY_SCHEMES = ("gen", "mat")


def is_key(source: str) -> bool:
    return source.split(":", 1)[0] in KEY_SCHEMES


def fingerprint(data: MLRData) -> dict[str, Any]:
    """What identifies the data a run reads, as a short hash and its parts.

    ``hash`` covers the split (every sample's source relative to the root, pid, camera, rate
    and LR flag, per split), the resolved data root, and each file read with its size and
    modification time (plus ``data.identity``: extra files, or the generator's parameters for
    images generated in memory); ``source`` the same without the split (what the trials of one
    dataset share; reports average runs over it). Content is not hashed: a file rewritten with
    the same size and time would pass, a copied or touched file does not.
    """
    root = data.root.resolve() if data.root is not None else None

    def rel(source: str) -> str:
        if root is not None and not is_key(source):
            try:
                return str(Path(source).resolve().relative_to(root))
            except ValueError:
                return source
        return source

    split = {name: [[rel(s.source), s.pid, s.camid, s.rate, bool(s.is_lr)] for s in samples]
             for name, samples in (("train", data.train), ("query", data.query),
                                   ("gallery", data.gallery))}
    files: list[list[Any]] = []
    total = 0
    extra_files = [str(p) for p in data.identity.get("files", [])]
    sources = dict.fromkeys(s.source for s in data.train + data.query + data.gallery)
    for source in [*extra_files, *sources]:
        if is_key(source):
            continue  # a generator key, or an index into a file listed in identity
        try:
            st = os.stat(source)
        except OSError:
            files.append([rel(source), None, None])  # unreadable now; the loader will say so
            continue
        files.append([rel(source), st.st_size, st.st_mtime_ns])
        total += st.st_size
    source = {"root": str(root) if root else None, "files": sorted(files),
              "identity": {k: v for k, v in data.identity.items() if k != "files"}}
    blob = json.dumps(source | {"split": split}, sort_keys=True, default=str).encode()
    source_blob = json.dumps(source, sort_keys=True, default=str).encode()
    return {"hash": hashlib.sha256(blob).hexdigest()[:10],
            # the data without the split: the same for every trial of one dataset folder
            "source": hashlib.sha256(source_blob).hexdigest()[:10],
            "kind": "files" if root is not None else "generated in memory",
            "root": str(root) if root else None, "files": len(files), "bytes": total,
            "covers": "split (sources, pids, cameras, rates), data root, size and mtime of "
                      "every file read" + (", generator parameters" if root is None else "")}


log = logging.getLogger(__name__)

Builder = Callable[[dict[str, Any], "str | None"], MLRData]
Writer = Callable[..., dict[str, int]]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the suite knows about one dataset, registered once.

    Attributes:
        name: the ``--dataset`` name.
        description: one line for ``list`` and ``--help``.
        build: ``(cfg, data_root) -> MLRData``: parse the layout and apply the protocol.
        paper_name: its name in the paper's tables (None if not in them).
        folder: its folder under the data root, also the ``synth --like`` name (None: it reads
            no files).
        write_stand_in: ``(root, ids=, full_size=, seed=) -> counts``: generated people in the
            original layout (None: no stand-in).
        config_section: its section under ``data.`` (None: no options of its own).
        options: the section's options.
        published: the published counts of the original dataset (``check-data`` compares).
        paper_ablation: the paper's ablation (Table 2) was run on this dataset.
        train_images: training images per trial of the real data under its protocol, from
            the published counts (cost estimates: ``suite --estimate``); None: unknown.
        train_images_of: for a dataset whose size is its config's (the generated one): the
            training images a config makes, counted without generating them.
    """

    name: str
    description: str
    build: Builder
    paper_name: str | None = None
    folder: str | None = None
    write_stand_in: Writer | None = None
    config_section: str | None = None
    options: dict[str, Option] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    paper_ablation: bool = False
    train_images: int | None = None
    train_images_of: Callable[[dict[str, Any]], int] | None = None

    def training_images(self, cfg: dict[str, Any]) -> int | None:
        """Training images per trial: the published count, or the config's (None: unknown)."""
        if self.train_images is not None:
            return self.train_images
        return self.train_images_of(cfg) if self.train_images_of else None

    @property
    def needs_root(self) -> bool:
        return self.folder is not None

    def trials(self, cfg: dict[str, Any]) -> int:
        """Number of trials (splits) of its protocol: ``data.<section>.trials``, else 1."""
        if self.config_section and "trials" in self.options:
            return int(cfg["data"][self.config_section]["trials"])
        return 1


DATASETS: Registry[DatasetSpec] = Registry("dataset", entry_point_group="mlr_bench.datasets")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under ``spec.name`` (a taken name raises)."""
    if spec.options and not spec.config_section:
        raise TypeError(f"dataset '{spec.name}' declares options but no config_section")
    return DATASETS.register(spec.name, spec)


def build_dataset(name: str, cfg: dict[str, Any], data_root: str | None = None) -> MLRData:
    spec = DATASETS[name]
    if spec.needs_root and not data_root:
        raise UserError(f"dataset '{name}' needs --data-root (or $MLRBENCH_DATA)")
    data = spec.build(cfg, data_root)
    split_file = cfg["data"].get("split_file")
    if split_file:
        from datasets import splits

        doc = splits.read(split_file)
        for difference in splits.config_differences(doc, cfg, spec.config_section):
            log.warning("split file %s was exported with another data config: %s%s", split_file,
                        difference, " (generated images: its keys now name other images)"
                        if data.root is None else "")
        data = splits.apply(data, doc, split_file, name, int(cfg["data"]["trial"]))
    return data


def trial_configs(dataset: str, cfg: dict[str, Any], trials: Any = "all"
                  ) -> list[tuple[int, dict[str, Any]]]:
    """The one trial loop: [(trial, config with data.trial set)] for ``trials`` = "all" or a
    list of trial numbers (each checked against the dataset's number of trials)."""
    n = DATASETS[dataset].trials(cfg)
    wanted = list(range(n)) if trials == "all" else [int(t) for t in trials]
    out = []
    for k in wanted:
        if not 0 <= k < n:
            raise UserError(f"trial {k} of dataset '{dataset}': it has trials 0..{n - 1}")
        c = copy.deepcopy(cfg)
        c["data"]["trial"] = k
        out.append((k, c))
    return out


def draw_rates(keys: list[str], rates: list[int], seed: int, salt: int = 11) -> dict[str, int]:
    """Draw one rate per key uniformly from ``rates`` with a fixed seed (order-independent)."""
    rng = np.random.default_rng([seed, salt])
    order = sorted(keys)
    picks = rng.integers(0, len(rates), size=len(order))
    return {k: int(rates[i]) for k, i in zip(order, picks)}
