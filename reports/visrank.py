"""Ranked lists as pictures: for chosen queries, the query as the network sees it (LR, at the
input size), its HR original where one exists, then its top-k gallery images with a green
(same identity) or red (another identity) border. ``python -m benchmark visrank`` draws one
run's; the report draws one per table row.

The images come from the run's data, rebuilt from the record (its dataset, config and data
root; generated data is generated again), never from copies kept with the results.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image

from benchmark.core.errors import UserError
from benchmark.harness.records import RANKS_SCHEMA
from datasets import DATASETS, build_dataset
from datasets.images import prepare

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: the random draw of queries is fixed (numpy default_rng(seed))
DRAW_SEED = 0


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def ranks_problem(data: Any, run_id: str | None) -> str | None:
    """What is wrong with a ranked-lists file, or None: its schema and run, and every field
    the figure reads, indices in range."""
    if not isinstance(data, dict) or data.get("schema") != RANKS_SCHEMA:
        return f"not ranked lists (expected schema {RANKS_SCHEMA})"
    if run_id is not None and data.get("run_id") != run_id:
        return (f"the ranked lists of run {str(data.get('run_id'))[:120]!r}, not of {run_id}; "
                "they belong to another run")
    gallery, queries = data.get("gallery"), data.get("queries")
    if not (isinstance(gallery, list) and isinstance(queries, list) and queries
            and _int(data.get("k")) and data["k"] >= 1 and isinstance(data.get("distance"), str)):
        return "ranked lists without their gallery, queries, k or distance"
    if not all(isinstance(g, dict) and isinstance(g.get("source"), str) for g in gallery):
        return "ranked lists whose gallery entries have no source"
    for n, q in enumerate(queries):
        ok = (isinstance(q, dict) and isinstance(q.get("source"), str) and _int(q.get("pid"))
              and _int(q.get("rate")) and q["rate"] >= 1 and _num(q.get("ap"))
              and isinstance(q.get("top"), list))
        top = q.get("top") if ok else None
        ok = ok and all(isinstance(t, list) and len(t) == 3 and _int(t[0]) and _int(t[1])
                        and _num(t[2]) and 0 <= t[0] < len(gallery) for t in top)
        if not ok:
            return (f"ranked lists whose query {n} is malformed (its source, pid, rate, ap, or a "
                    "top entry [gallery index in range, pid, distance])")
    return None


def load_ranks(record_path: str | Path, run_id: str | None = None) -> dict[str, Any]:
    """The ranked lists beside a record, checked (``ranks_problem``) against ``run_id``."""
    path = Path(record_path).with_suffix(".ranks.json")
    if not path.is_file():
        raise UserError(f"{record_path}: no ranked lists {path.name} beside it (runs write them "
                        "since eval.ranks_top_k was added; `python -m benchmark evaluate "
                        f"{record_path}` writes them from the run's kept weights)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({str(exc).splitlines()[0][:200]})"
                        ) from None
    problem = ranks_problem(data, run_id)
    if problem:
        raise UserError(f"{path}: {problem}")
    return data


def choose(ranks: dict[str, Any], worst: int, random: int, seed: int = DRAW_SEED
           ) -> list[tuple[int, str]]:
    """[(query row, why)]: the ``worst`` queries by AP (lowest first, ties by query order),
    then ``random`` others drawn uniformly with a fixed seed (in query order)."""
    qs = ranks["queries"]
    order = sorted(range(len(qs)), key=lambda i: (qs[i]["ap"], i))
    picked = [(i, "worst") for i in order[:worst]]
    rest = np.array(sorted(set(range(len(qs))) - {i for i, _ in picked}), dtype=np.int64)
    if random and len(rest):
        rng = np.random.default_rng(seed)
        draw = np.sort(rng.choice(rest, size=min(random, len(rest)), replace=False))
        picked += [(int(i), "random") for i in draw]
    return picked


class _Images:
    """The run's images by source, rebuilt from its record."""

    def __init__(self, record: dict[str, Any], data_root: str | None):
        cfg = record["config"]
        root = data_root or record["data"].get("data_root")
        spec = DATASETS[record["dataset"]]
        if spec.needs_root and (not root or not Path(root).is_dir()):
            raise UserError(f"the images of run {record['run_id']} are under the data root "
                            f"{root!r}, which is not here; pass --data-root")
        self.data = build_dataset(record["dataset"], cfg, root)
        self.size = tuple(int(v) for v in cfg["model"]["input_size"])
        self.interp = cfg["data"]["interpolation"]
        base = self.data.root.resolve() if self.data.root is not None else None
        self.by_source = {}
        for s in self.data.train + self.data.query + self.data.gallery:
            key = s.source
            if base is not None:
                try:
                    key = str(Path(s.source).resolve().relative_to(base))
                except ValueError:
                    pass
            self.by_source.setdefault(key, s)
        self.genuine = bool(self.data.info.get("genuine_lr"))

    def sample(self, source: str):
        if source not in self.by_source:
            raise UserError(f"image {source} of the ranked lists is not in the run's data any "
                            "more (the data changed since the run)")
        return self.by_source[source]

    def as_seen(self, source: str, rate: int) -> np.ndarray:
        """HWC uint8 at the input size, by the protocol's path at ``rate``."""
        return prepare(self.data.load(self.sample(source)), rate, self.size,
                       self.interp).transpose(1, 2, 0)

    def native(self, source: str) -> np.ndarray:
        img = self.data.load(self.sample(source))
        pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
        return np.asarray(pil.convert("RGB"))


def draw(record: dict[str, Any], ranks: dict[str, Any], k: int = 10, worst: int = 4,
         random: int = 4, data_root: str | None = None, dpi: int = 110,
         palette: bool = False) -> bytes:
    """PNG bytes of the ranked lists of the chosen queries; ``palette``: a 256-colour PNG
    (about a fifth of the size; the report's figures)."""
    if k < 1 or worst < 0 or random < 0 or worst + random < 1:
        raise UserError(f"visrank: --k must be >= 1 and --worst + --random >= 1; got k={k}, "
                        f"worst={worst}, random={random}")
    images = _Images(record, data_root)
    picked = choose(ranks, worst, random)
    k = min(k, ranks["k"])
    lead = 1 if images.genuine else 2
    cols = lead + k
    fig, axes = plt.subplots(len(picked), cols, figsize=(0.78 * cols + 0.6, 1.6 * len(picked)),
                             squeeze=False)
    gallery = ranks["gallery"]
    for row, (qi, why) in enumerate(picked):
        q = ranks["queries"][qi]
        panels = [(images.as_seen(q["source"], q["rate"]),
                   f"{why} AP {q['ap']:.0f}\nquery r={q['rate']}", "black")]
        if not images.genuine:
            panels.append((images.native(q["source"]), f"HR original\npid {q['pid']}", "black"))
        for n, (g, pid, dist) in enumerate(q["top"][:k], 1):
            match = pid == q["pid"]
            panels.append((images.as_seen(gallery[g]["source"], 1), f"{n}: {dist:.3f}",
                           "#1a9850" if match else "#d73027"))
        for col in range(cols):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(panels):
                ax.axis("off")
                continue
            img, title, color = panels[col]
            ax.imshow(img, interpolation="nearest")  # pixels as the network sees them
            ax.set_title(title, fontsize=7.5)
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2.5 if col >= lead else 0.5)
    order = (f"rows: the {worst} lowest-AP queries (lowest first), then {random} random "
             f"queries (seed {DRAW_SEED})")
    fig.suptitle(f"{record['method']} on {record['dataset']} (seed {record['seed']}): top-{k} "
                 f"by {ranks['distance']} distance; green = same identity;\n{order}",
                 fontsize=8.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    if not palette:
        return buf.getvalue()
    buf.seek(0)
    small = Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                                     dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()
