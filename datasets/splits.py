"""Split files: the exact train / query / gallery lists of one trial, as a file to share.

``python -m benchmark split export`` writes one; ``run --split F`` (config ``data.split_file``)
reads one in place of the protocol's own draw. A row is ``[file, pid, camera, rate, lr]``: the
image's path relative to the data root (or the key of an image generated in memory or held inside
a file such as CUHK03's .mat), the person id as in the original data, the 0-based camera, the
protocol's down-sampling rate (1: as captured) and whether the image takes the LR path.

The file also holds what made it (dataset, trial, the protocol's config section, the data
fingerprint of the run it describes) and a checksum of its lists, so a copy that was edited or
cut short is refused before any image is read. Reading one runs no code (plain JSON, size and
nesting limited) and no row may name a file outside the data root.

A split file does not enter the config hash: the data fingerprint already covers every row, so a
run on an exported split has the run id of the suite's own run on that trial, and a run on any
other split has another.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from benchmark.core.errors import UserError, short
from benchmark.core.safeio import slug
from datasets.base import KEY_SCHEMES, MLRData, Sample, fingerprint, is_key

FORMAT = "mlr-bench split"
VERSION = 1
COLUMNS = ["file", "pid", "camera", "rate", "lr"]
LISTS = ("train", "query", "gallery")
#: a split file larger than this is refused unread (Market-1501's is about 2 MB)
MAX_BYTES = 256 * 1024 * 1024


def _rows(data: MLRData) -> dict[str, list[list[Any]]]:
    root = data.root.resolve() if data.root is not None else None

    def rel(source: str) -> str:
        if root is None or is_key(source):
            return source
        try:
            return PurePosixPath(Path(source).resolve().relative_to(root)).as_posix()
        except ValueError:
            raise UserError(f"split export: image {source} lies outside the data root {root}; "
                            "a split file names images relative to the root") from None

    return {name: [[rel(s.source), int(s.pid), int(s.camid), int(s.rate), bool(s.is_lr)]
                   for s in getattr(data, name)] for name in LISTS}


#: what the checksum covers besides the lists: a file relabelled (another trial, dataset or
#: config) fails it as an edited list does
SIGNED = ("format", "version", "dataset", "trial", "config")
#: the grammar of each kind of key (``datasets.base.KEY_SCHEMES``): an image generated in memory
#: (gen:<pid>:<camera>:<index>), an image inside CUHK03's .mat (mat:<kind>:<pair>:<id>:<view>)
KEY_GRAMMAR = {"gen": re.compile(r"gen:\d{1,9}:\d{1,3}:\d{1,6}"),
               "mat": re.compile(r"mat:(labeled|detected):\d{1,3}:\d{1,6}:\d{1,3}")}


def checksum(doc: dict[str, Any]) -> str:
    """sha256 of the lists (the order of rows counts: it is the order the harness reads them
    in) and of the header fields :data:`SIGNED`, in a canonical form. How to sign a split made
    elsewhere: ``python -m benchmark split sign FILE``."""
    signed = {k: doc.get(k) for k in SIGNED} | {k: doc[k] for k in LISTS}
    blob = json.dumps(signed, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def export(data: MLRData, dataset: str, cfg: dict[str, Any], section: str | None
           ) -> dict[str, Any]:
    """The split file of ``data`` (one trial of ``dataset`` built from ``cfg``)."""
    lists = _rows(data)
    fp = fingerprint(data)
    protocol = {k: v for k, v in cfg["data"].items() if not isinstance(v, dict)
                and k not in ("split_file", "skip_bad")}
    if section:
        protocol[section] = cfg["data"][section]
    doc = {
        "format": FORMAT, "version": VERSION, "dataset": dataset,
        "trial": int(cfg["data"]["trial"]),
        "protocol": data.info.get("protocol"), "metric": data.info.get("metric"),
        "config": protocol,
        "data": {"fingerprint": fp["hash"], "source": fp["source"], "kind": fp["kind"],
                 "generated": bool(data.info.get("generated"))},
        "columns": COLUMNS,
        "counts": data.counts(),
        **lists,
    }
    return {**doc, "checksum": checksum(doc)}


def _bad(path: str, what: str) -> UserError:
    return UserError(f"split file {path}: {what}")


def _check_row(path: str, name: str, i: int, row: Any) -> list[Any]:
    where = f"{name}[{i}]"
    if not isinstance(row, list) or len(row) != len(COLUMNS):
        raise _bad(path, f"{where} must be [{', '.join(COLUMNS)}]; got {short(row, 80)}")
    file, pid, cam, rate, lr = row
    ok = (isinstance(file, str) and file
          and all(isinstance(v, int) and not isinstance(v, bool) for v in (pid, cam, rate))
          and cam >= 0 and rate >= 1 and isinstance(lr, bool))
    if not ok:
        raise _bad(path, f"{where} must be [file (text), pid (integer), camera (integer >= 0), "
                         f"rate (integer >= 1), lr (true/false)]; got {short(row, 80)}")
    if is_key(file):
        grammar = KEY_GRAMMAR.get(file.split(":", 1)[0])
        if grammar is None or not grammar.fullmatch(file):
            raise _bad(path, f"{where} names the key {short(file, 60)}, which is not of the form "
                             "gen:<pid>:<camera>:<index> or "
                             "mat:<labeled|detected>:<pair>:<id>:<view>")
    else:
        p = PurePosixPath(file)
        if p.is_absolute() or ".." in p.parts or "\\" in file or ":" in file:
            raise _bad(path, f"{where} names {short(file, 80)}: a file must be a path relative "
                             "to the data root, without '..' (or a key "
                             f"{'/'.join(s + ':' for s in KEY_SCHEMES)}...); refused")
    return row


def read(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """A split file, checked: format and version, every row's fields, the checksum (unless
    ``verify`` is false: ``split sign``). Errors name the file and what was expected."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"split file {path}: no such file (write one with python -m benchmark "
                        "split export --dataset D --trial K --out F)")
    if p.stat().st_size > MAX_BYTES:
        raise _bad(str(path), f"{p.stat().st_size} bytes, more than the {MAX_BYTES} a split file "
                              "may have; refused")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(str(path), f"not a JSON split file ({str(exc).splitlines()[0][:120]})"
                   ) from None
    except RecursionError:
        raise _bad(str(path), "nested too deeply to read; refused") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(str(path), f"not a split file (expected \"format\": \"{FORMAT}\", as split "
                              "export writes)")
    if doc.get("version") != VERSION:
        raise _bad(str(path), f"version {short(doc.get('version'))}; this suite reads version "
                              f"{VERSION}")
    if not isinstance(doc.get("dataset"), str):
        raise _bad(str(path), "no \"dataset\" name")
    trial = doc.get("trial", 0)
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise _bad(str(path), f"\"trial\" must be a whole number >= 0; got {short(trial)}")
    for name in LISTS:
        rows = doc.get(name)
        if not isinstance(rows, list) or not rows:
            raise _bad(str(path), f"\"{name}\" must be a non-empty list of rows "
                                  f"[{', '.join(COLUMNS)}]")
        for i, row in enumerate(rows):
            _check_row(str(path), name, i, row)
    if "config" in doc and not isinstance(doc["config"], dict):
        raise _bad(str(path), "\"config\" must be a mapping (the data config it was made with)")
    want = doc.get("checksum")
    have = checksum(doc)
    if verify and want != have:
        raise _bad(str(path), f"checksum {short(want, 80)} does not match its lists and header "
                              f"({have}): the file was edited or cut short; export it again (a "
                              "split made by hand: python -m benchmark split sign)")
    return doc


def config_differences(doc: dict[str, Any], cfg: dict[str, Any], section: str | None
                       ) -> list[str]:
    """The keys of the data config the split file was exported with that the run sets
    otherwise (informational for files, whose rows carry their rates; for images generated in
    memory a key then names another image)."""
    made = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    out = []
    for key, value in made.items():
        if key in ("trial", "split_file", "skip_bad"):
            continue
        now = cfg["data"].get(key)
        if key == section or not isinstance(value, dict):
            if now != value:
                out.append(f"data.{key}: {short(value, 40)} in the file, {short(now, 40)} here")
    return out


def apply(data: MLRData, doc: dict[str, Any], path: str | Path, dataset: str, trial: int
          ) -> MLRData:
    """``data`` with its lists replaced by the split file's (already :func:`read`): files
    resolved under the data root (each must exist), keys kept as they are. Refused before any
    image is decoded when the file is another dataset's, names a missing file, or puts a
    person's images in both the training and the test lists."""
    if doc["dataset"] != dataset:
        raise _bad(str(path), f"made for dataset '{doc['dataset']}', not '{dataset}'")
    if int(doc["trial"]) != int(trial):
        raise _bad(str(path), f"holds trial {doc['trial']}, but the run asks for trial {trial} "
                              f"(data.trial); drop --set data.trial or set it to {doc['trial']}")
    root = data.root.resolve() if data.root is not None else None
    missing: list[str] = []
    schemes = {s.source.split(":", 1)[0] for s in data.train + data.query + data.gallery
               if is_key(s.source)}

    def sample(row: list[Any]) -> Sample:
        file, pid, cam, rate, lr = row
        if is_key(file):
            if file.split(":", 1)[0] not in schemes:
                raise _bad(str(path), f"names the key {short(file, 60)}, but dataset '{dataset}' "
                                      "has no images of that kind")
            source = file
        elif root is None:
            raise _bad(str(path), f"names the file {short(file, 80)}, but dataset '{dataset}' "
                                  "reads no files (its images are generated in memory)")
        else:
            full = root / file
            if not full.is_file():
                missing.append(file)
            elif not full.resolve().is_relative_to(root):
                raise _bad(str(path), f"names {short(file, 80)}, a link that leads outside the "
                                      f"data root {root}; refused")
            source = str(full)
        return Sample(source, pid, cam, rate, lr)

    lists = {name: [sample(r) for r in doc[name]] for name in LISTS}
    if missing:
        raise _bad(str(path), f"names {len(missing)} file(s) that do not exist under the data "
                              f"root {root}: {', '.join(missing[:3])}"
                              + (", ..." if len(missing) > 3 else ""))
    overlap = sorted({s.pid for s in lists["train"]}
                     & {s.pid for s in lists["query"] + lists["gallery"]})
    if overlap:
        raise _bad(str(path), f"{len(overlap)} identit{'y is' if len(overlap) == 1 else 'ies are'} "
                              "in both the training and the test "
                              f"lists (e.g. {', '.join(map(str, overlap[:5]))}); a re-id split "
                              "keeps them apart")
    info = dict(data.info)
    own = all([(s.source, s.pid, s.camid, s.rate, s.is_lr) for s in getattr(data, n)]
              == [(s.source, s.pid, s.camid, s.rate, s.is_lr) for s in lists[n]] for n in LISTS)
    if not own:  # the protocol's description of its own draw no longer holds: the file's
        info["trial"] = int(doc["trial"])
        info["train_ids"] = sorted({s.pid for s in lists["train"]})
        info["test_ids"] = sorted({s.pid for s in lists["query"]})
        if "lr_rates" in info:
            info["lr_rates"] = {row[0]: row[3] for n in LISTS for row in doc[n] if row[4]}
    info["split_file"] = {"file": slug(Path(path).name), "checksum": doc["checksum"],
                          "exported_from": doc.get("data", {}).get("fingerprint"),
                          "protocols_own": own}
    return replace(data, train=lists["train"], query=lists["query"], gallery=lists["gallery"],
                   info=info)
