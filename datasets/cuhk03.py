"""CUHK03: ``cuhk03/cuhk03_release/cuhk-03.mat`` (MATLAB v7.3 = HDF5, read with h5py), or
extracted PNGs ``{pair}_{pid:03d}_{view}_{img:02d}.png``; and a generated stand-in.

In the .mat, ``labeled`` and ``detected`` are 1x5 cells (one per camera pair) of
(ids x 10) cells of images: views 1-5 are camera A, 6-10 camera B; some cells are empty.
``testsets`` is a 1x20 cell of (100 x 2) [pair, pid] arrays (1-based): the classic test sets.
HDF5 stores MATLAB arrays transposed, so an image reads as (3, W, H) and a cell as (10, ids).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import UserError
from benchmark.core.options import Option
from datasets.base import DatasetSpec, MLRData, Sample, draw_rates, register_dataset
from datasets.files import first_existing, list_images, parse_names, read_image
from datasets.protocols import (
    check_trial,
    data_root_path,
    generated_info,
    mark_lr,
    protocol_info,
    rel_key,
    split_ids,
)

PAIR_IDS = (843, 440, 77, 58, 49)  # identities per camera pair (1,467 in all)
PUBLISHED = {"ids": 1467, "labeled_images": 14096, "detected_images": 14097}
PNG_NAME = r"(\d)_(\d{3})_([12])_(\d{2})\.png"
CAMERA_A, CAMERA_B = 0, 1
#: the ``data.cuhk03`` config section
OPTIONS = {"images": Option("labeled", "labeled or detected crops", ("labeled", "detected")),
           "trials": Option(10, "classic test sets 1..10", low=1, high=20)}


@dataclass
class CUHK03:
    """Parsed CUHK03: images as samples (pid global over pairs, camid 0 = camera A, 1 = B), the
    classic test sets as lists of global pids (empty when only PNGs without the .mat exist)."""

    samples: list[Sample]
    testsets: list[list[int]]
    source: str
    pair_of: dict[int, tuple[int, int]] = field(default_factory=dict)  # pid -> (pair, index)
    _refs: dict[str, object] = field(default_factory=dict, repr=False)
    _file: object = None

    def load(self, sample: Sample) -> np.ndarray:
        if not sample.source.startswith("mat:"):
            return read_image(sample.source)
        with _H5_LOCK:
            data = self._file[self._refs[sample.source]][()]
        if data.ndim != 3:
            raise ValueError(f"{sample.source}: not an image cell (shape {data.shape})")
        return np.ascontiguousarray(data.T)  # (3, W, H) -> (H, W, 3)


_H5_LOCK = threading.Lock()


def _global_pids(pair_sizes: list[int]) -> list[int]:
    return [int(x) for x in np.cumsum([0, *pair_sizes])[:-1]]


def parse(data_root: str | Path, images: str = "labeled") -> CUHK03:
    if images not in ("labeled", "detected"):
        raise UserError(f"config 'data.cuhk03.images' must be labeled or detected; got {images!r}")
    base = Path(data_root) / "cuhk03"
    mat = base / "cuhk03_release" / "cuhk-03.mat"
    png_dirs = [base / f"images_{images}", base / "cuhk03_release" / f"images_{images}"]
    found = first_existing([mat, *png_dirs], "CUHK03 data", "cuhk03", data_root)
    if found == mat:
        return _parse_mat(mat, images)
    return _parse_png(found, mat)


def _open_mat(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path} is not a MATLAB v7.3 (HDF5) file that h5py can open: {exc}"
                        ) from exc


def _require(mat, key: str, path: Path):
    if key not in mat:
        found = ", ".join(k for k in mat.keys() if not k.startswith("#")) or "nothing"
        raise UserError(f"{path} lacks the field '{key}' of cuhk-03.mat (found: {found})")
    return mat[key]


def _parse_mat(path: Path, images: str) -> CUHK03:
    mat = _open_mat(path)
    cells = _require(mat, images, path)
    tests = _require(mat, "testsets", path)
    try:
        pair_refs = list(cells[()].ravel())
        pair_cells = [mat[r] for r in pair_refs]
        pair_sizes = [int(c.shape[1]) for c in pair_cells]
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserError(f"{path}: '{images}' is not a cell of camera pairs of image cells "
                        f"({exc})") from exc
    offsets = _global_pids(pair_sizes)
    samples, refs, pair_of = [], {}, {}
    for p, cell in enumerate(pair_cells):
        grid = cell[()]  # (10, ids) object references
        if grid.ndim != 2 or grid.shape[0] != 10:
            raise UserError(f"{path}: camera pair {p + 1} of '{images}' has shape {grid.shape}; "
                            "expected 10 views per identity")
        for i in range(grid.shape[1]):
            pid = offsets[p] + i
            pair_of[pid] = (p + 1, i + 1)
            for v in range(10):
                ds = mat[grid[v, i]]
                if ds.ndim != 3:  # an empty cell
                    continue
                key = f"mat:{images}:{p + 1}:{i + 1}:{v + 1}"
                refs[key] = grid[v, i]
                samples.append(Sample(key, pid, CAMERA_A if v < 5 else CAMERA_B))
    testsets = []
    for ref in tests[()].ravel():
        arr = np.asarray(mat[ref][()]).T.astype(int)  # (100, 2): pair, pid (1-based)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise UserError(f"{path}: a 'testsets' entry has shape {arr.shape}; expected (N, 2)")
        testsets.append([offsets[pr - 1] + pi - 1 for pr, pi in arr.tolist()])
    return CUHK03(samples, testsets, str(path), pair_of, refs, mat)


def _parse_png(folder: Path, mat: Path) -> CUHK03:
    files = list_images(folder, "cuhk03", (".png",))
    rows = parse_names(files, PNG_NAME, "CUHK03 names like 1_001_1_01.png (pair, id, view, image)",
                       lambda m: (int(m.group(1)) * 10_000 + int(m.group(2)), int(m.group(3))))
    keys = sorted({pid for _, pid, _ in rows})
    sizes = [sum(1 for k in keys if k // 10_000 == p) for p in range(1, 6)]
    offsets = _global_pids(sizes)
    rank = {k: offsets[k // 10_000 - 1] + sorted(x for x in keys if x // 10_000 == k // 10_000
                                                 ).index(k) for k in keys}
    samples = [Sample(str(f), rank[pid], view - 1) for f, pid, view in rows]
    pair_of = {rank[k]: (k // 10_000, k % 10_000) for k in keys}
    testsets: list[list[int]] = []
    if mat.exists():  # the classic test sets live in the .mat
        full = _parse_mat(mat, "labeled")
        by_pair = {v: k for k, v in pair_of.items()}
        for t in full.testsets:
            testsets.append([by_pair[full.pair_of[p]] for p in t if full.pair_of[p] in by_pair])
    return CUHK03(samples, testsets, str(folder), pair_of)


# -- generated stand-in ----------------------------------------------------------------------------
def _matlab_header() -> bytes:
    text = (f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
            f"{time.strftime('%a %b %d %H:%M:%S %Y', time.gmtime())} HDF5 schema 1.00 .")
    return text.ljust(116).encode() + b"\x00" * 8 + b"\x00\x02" + b"IM"


def _spread_empty(total_slots: int, images: int, rng: np.random.Generator, ids: int
                  ) -> set[tuple[int, int]]:
    """Which (id, view) cells are empty: only views 4-5 and 9-10, so both cameras keep images."""
    empty = total_slots - images
    slots = [(i, v) for i in range(ids) for v in (3, 4, 8, 9)]
    pick = rng.choice(len(slots), size=empty, replace=False)
    return {slots[k] for k in pick}


def write_synthetic(root: str | Path, ids: int = 24, full_size: bool = False, seed: int = 0
                    ) -> dict[str, int]:
    """Write ``cuhk03/cuhk03_release/cuhk-03.mat`` (a real v7.3 file) with generated people.

    ``full_size``: 1,467 ids over 5 pairs (843/440/77/58/49), 14,096 labeled and 14,097
    detected images, 20 test sets of 100 ids. Otherwise ``ids`` identities over the 5 pairs and
    test sets of ids // 3.
    """
    import h5py
    from PIL import Image

    from datasets.generator import PersonGenerator

    rng = np.random.default_rng([seed, 31])
    pair_sizes = list(PAIR_IDS) if full_size else [len(a) for a in np.array_split(
        np.arange(ids), 5)]
    if min(pair_sizes) < 1:
        raise UserError(f"synth --like cuhk03 needs --ids >= 5 (one per camera pair); got {ids}")
    total = sum(pair_sizes)
    n_labeled = PUBLISHED["labeled_images"] if full_size else total * 10 - total // 2
    n_detected = PUBLISHED["detected_images"] if full_size else n_labeled + 1
    test_size = 100 if full_size else max(2, total // 3)
    gen = PersonGenerator(seed, 160, 64, num_cameras=2)
    out = Path(root) / "cuhk03" / "cuhk03_release"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cuhk-03.mat"
    tmp = path.with_suffix(".mat.tmp")
    ref_dtype = h5py.special_dtype(ref=h5py.Reference)
    counts = {"ids": total, "labeled": 0, "detected": 0}
    with h5py.File(tmp, "w", userblock_size=512, libver="earliest") as f:
        refs = f.create_group("#refs#")
        serial = iter(range(10**9))

        def put(data: np.ndarray, cls: str, empty: bool = False) -> h5py.Reference:
            ds = refs.create_dataset(f"r{next(serial)}", data=data)
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            if empty:
                ds.attrs["MATLAB_empty"] = np.uint8(1)
            return ds.ref

        empty_ref = put(np.zeros(2, dtype=np.uint64), "double", empty=True)
        offsets = _global_pids(pair_sizes)
        for kind, n_images in (("labeled", n_labeled), ("detected", n_detected)):
            kind_rng = np.random.default_rng([seed, 32, len(kind)])
            empty = _spread_empty(total * 10, n_images, kind_rng, total)
            pair_refs = []
            for p, n in enumerate(pair_sizes):
                grid = np.empty((10, n), dtype=object)
                for i in range(n):
                    pid = offsets[p] + i
                    for v in range(10):
                        if (pid, v) in empty:
                            grid[v, i] = empty_ref
                            continue
                        img = gen.render(pid, 0 if v < 5 else 1, v + (0 if kind == "labeled"
                                                                      else 10))
                        scale = rng.uniform(0.8, 1.25)  # CUHK03 crops vary in size
                        h, w = int(160 * scale), int(64 * scale)
                        img = np.asarray(Image.fromarray(img).resize((w, h)))
                        grid[v, i] = put(np.ascontiguousarray(img.T), "uint8")
                        counts[kind] += 1
                cell = refs.create_dataset(f"c{next(serial)}", data=grid, dtype=ref_dtype)
                cell.attrs["MATLAB_class"] = np.bytes_("cell")
                pair_refs.append(cell.ref)
            top = f.create_dataset(kind, data=np.array([pair_refs], dtype=object), dtype=ref_dtype)
            top.attrs["MATLAB_class"] = np.bytes_("cell")
        test_refs = []
        all_ids = [(p + 1, i + 1) for p, n in enumerate(pair_sizes) for i in range(n)]
        for t in range(20):
            pick = np.random.default_rng([seed, 33, t]).choice(len(all_ids), test_size,
                                                                replace=False)
            arr = np.array([all_ids[k] for k in sorted(pick)], dtype=np.float64)
            test_refs.append(put(np.ascontiguousarray(arr.T), "double"))
        top = f.create_dataset("testsets", data=np.array([test_refs], dtype=object),
                               dtype=ref_dtype)
        top.attrs["MATLAB_class"] = np.bytes_("cell")
    with open(tmp, "r+b") as fh:
        fh.write(_matlab_header())
    tmp.replace(path)
    return counts


# -- the MLR protocol ---------------------------------------------------------------------------
def build_mlr_cuhk03(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = data_root_path(data_root, "mlr-cuhk03")
    c = cfg["data"]["cuhk03"]
    parsed = parse(root, c["images"])
    trials = int(c["trials"])
    k = check_trial(cfg, trials, "mlr-cuhk03")
    ids = sorted({s.pid for s in parsed.samples})
    if parsed.testsets:
        if k >= len(parsed.testsets):
            raise UserError(f"{parsed.source} holds {len(parsed.testsets)} test sets; "
                            f"data.trial={k} asks for more")
        test_ids = sorted(set(parsed.testsets[k]) & set(ids))
        split_note = f"classic test set {k + 1} of cuhk-03.mat"
    else:  # PNGs without the .mat: a seeded random test set of the classic size
        _, test_ids = split_ids(ids, min(100, len(ids) // 2), int(cfg["data"]["seed"]), 71, k)
        split_note = "random test set (no cuhk-03.mat with the classic test sets found)"
    lr_keys = [rel_key(s.source, root) for s in parsed.samples if s.camid == CAMERA_A]
    rates = draw_rates(lr_keys, cfg["data"]["rates"], int(cfg["data"]["seed"]), salt=62)
    samples = mark_lr(parsed.samples, CAMERA_A, rates, root)
    test = set(test_ids)
    train = [s for s in samples if s.pid not in test]
    query = [s for s in samples if s.pid in test and s.is_lr]
    gallery = [s for s in samples if s.pid in test and not s.is_lr]
    info = protocol_info("MLR-CUHK03 (SING)", "A (views 1-5)", rates, cfg, k, trials,
                         "single-shot", sorted({s.pid for s in train}), test_ids,
                         generated_info(root / "cuhk03"), images=c["images"], split=split_note,
                         measured={"ids": len(ids), f"{c['images']}_images": len(parsed.samples)})
    mat = root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"  # images and/or test sets
    return MLRData("mlr-cuhk03", train, query, gallery, parsed.load, info, root=root,
                   identity={"files": [str(mat)] if mat.is_file() else []})


register_dataset(DatasetSpec(
    name="mlr-cuhk03",
    description="MLR-CUHK03: camera A down-sampled (r in {2,3,4}), classic 1,367/100 test "
                "sets, single-shot, 10 trials",
    build=build_mlr_cuhk03, paper_name="MLR-CUHK03 (MLR-C)", folder="cuhk03",
    write_stand_in=write_synthetic, config_section="cuhk03", options=OPTIONS,
    published=PUBLISHED, paper_ablation=True,
    train_images=13135))  # 1,367 of the 1,467 ids, 14,096 labeled images in all
