"""``python -m benchmark report``: the results store -> report.md and report.html.

Markdown references PNG files written beside it (renders on GitHub); the HTML is one
self-contained file with the same figures inlined as base64 (no network needed).
"""

from __future__ import annotations

import base64
import glob
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from benchmark.core.atomic import current_umask, write_bytes
from benchmark.core.errors import UserError
from benchmark.core.safeio import slug
from benchmark.harness.records import load_record
from reports import claims as claims_mod
from reports import literature as lit_mod
from reports import plots
from reports import rerank as rerank_mod
from reports import swa as swa_mod
from reports import sweep as sweep_mod
from reports.formatting import (
    MISSING,
    all_results,
    display_table1,
    display_table2,
    html_table,
    md_escape,
    md_table,
)
from reports.paper import check, ladder, paper_tables, table1, table2, table2_dataset
from reports.results import (
    GROUP,
    aggregate,
    cost_frame,
    load_store,
    reproductions_frame,
    runs_frame,
    sr_frame,
)
from reports.visrank import draw, load_ranks

log = logging.getLogger(__name__)

#: what a report folder holds (besides its PNG figures)
REPORT_FILES = ("report.md", "report.html")
GENERATED_BANNER = ("Generated data: the reproduced numbers below come from images the suite "
                    "generated (synthetic / synth stand-ins), not from the real datasets. They "
                    "exercise the code path; they do not test the paper's claim.")
FOOTNOTE = (f"{MISSING} : no number — the paper gives none for that cell, or the results folder "
            "holds no run of that method on that dataset at this profile. \"paper → reproduced "
            "(difference)\" compares the paper with runs on the real data; \"paper; generated: "
            "value\" puts a run on generated data beside the paper's number without a "
            "difference, since the two measure different data. \"n/a (queries genuinely LR)\": "
            "the protocol's queries were captured at low resolution (CAVIAR), so there is no HR "
            "version of them for the HR->HR control. A column \"(not in the paper)\" is a "
            "dataset the paper has no column for (the generated one), where the paper's methods "
            "ran here: their own numbers, with nothing published to compare.")


@dataclass
class Figure:
    """A figure of the report. ``file`` is made a plain file name whatever the record fields it
    was built from hold (a ``/`` or ``..`` in a profile or run id never leaves the report)."""

    title: str
    file: str
    png: bytes

    def __post_init__(self) -> None:
        stem = self.file[:-4] if self.file.endswith(".png") else self.file
        self.file = f"{slug(stem, 200)}.png"

    @property
    def b64(self) -> str:
        return base64.b64encode(self.png).decode()


def _provenance_table(agg: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, c in agg.iterrows():
        p = c["provenance"]
        rows.append({"method": c["label"], "dataset": c["dataset"], "n": c["n"],
                     "data": p["data"], "seeds": ",".join(map(str, p["seeds"])),
                     "trials": ",".join(map(str, p["trials"])),
                     "commits": ", ".join(x[:12] for x in p["commits"]),
                     "config": ", ".join(p["config_hashes"]), "device": "; ".join(p["devices"]),
                     "kernels": "; ".join(p["kernels"]), "reproduced": p["reproduced"],
                     "weights": "; ".join(p["weights"]), "runs": ", ".join(p["run_ids"])})
    return pd.DataFrame(rows)


def build(results: str | Path, skip_bad: bool = False) -> dict[str, Any]:
    """Everything the templates need, computed from the results folder."""
    store = load_store(results, skip_bad)
    paper = paper_tables()
    frame = runs_frame(store)
    agg = aggregate(frame)
    if not frame.empty:  # each run's row label (its method, and config variant if several)
        frame = frame.merge(agg[[*GROUP, "label"]], on=GROUP, how="left")
    cost = cost_frame(store)
    sr = sr_frame(frame) if not frame.empty else pd.DataFrame()
    sections = []
    profiles = sorted(set(agg["profile"])) if not agg.empty else []
    for profile in profiles:
        sub = agg[agg.profile == profile]
        fr = frame[frame.profile == profile]
        ladders = []
        steps = ladder(paper)
        ablation = table2_dataset()
        for dataset in [ablation] + sorted(set(sub.dataset) - {ablation}):
            on_ladder = (sub.dataset == dataset) & sub.method.isin(steps)
            if dataset == ablation or on_ladder.any():
                t = display_table2(table2(agg, profile, paper, dataset))
                ladders.append({"dataset": dataset, "paper": dataset == ablation,
                                "generated": bool(sub[sub.dataset == dataset].generated.any()),
                                "md": md_table(t), "html": html_table(t), "frame": t})
        t1 = display_table1(table1(agg, profile, paper))
        figures = []
        for dataset in sorted(set(fr.dataset)):
            g = fr[fr.dataset == dataset]
            figures.append(Figure(f"CMC, {dataset} ({profile})",
                                  f"cmc__{profile}__{dataset}.png",
                                  plots.cmc_curves(g, f"CMC on {dataset}, profile {profile}")))
            if any(bool(b) for b in g["by_rate"]):
                figures.append(Figure(f"Rank-1 per down-sampling rate, {dataset} ({profile}): "
                                      "each query at the rate the protocol gave it (about a "
                                      "third of the queries per rate), where the sweep above "
                                      "re-makes every query at every rate",
                                      f"rate__{profile}__{dataset}.png",
                                      plots.rank1_by_rate(g, f"rank-1 per rate r, {dataset}")))
        for _, r in fr[fr["strip"].notna()].sort_values(["dataset", "label"]).iterrows():
            figures.append(Figure(
                f"{r['label']} on {r['dataset']} (seed {r['seed']}): LR input, bicubic, "
                f"learned SR, HR", f"sr__{r['run_id']}.png", Path(r["strip"]).read_bytes()))
        speed = cost[cost.profile == profile] if not cost.empty else cost
        if not speed.empty:
            best = speed.groupby("method")["query img/s"].median()
            pts = (sub.groupby("method")["rank1_mean"].mean().rename("rank1").to_frame()
                   .join(best, how="inner").reset_index())
            if not pts.empty:
                figures.append(Figure(f"Rank-1 vs query throughput ({profile})",
                                      f"speed__{profile}.png", plots.rank1_vs_throughput(
                                          pts, f"rank-1 (mean over datasets) vs query img/s, "
                                          f"{profile}")))
        series = swa_mod.trajectories(fr)
        if series:
            figures.insert(0, Figure(f"SWA weights per epoch ({profile})", f"swa__{profile}.png",
                                     plots.swa_trajectories(series, "SWA: p_hr and mean weights "
                                                            f"per epoch, {profile}")))
        sweeps = _sweeps(fr, profile)
        rank_figures = _ranked_lists(fr, profile, store.skipped)
        swa_t = swa_mod.swa_table(fr)
        rr_t = rerank_mod.rerank_table(fr)
        claims = claims_mod.claims_table(fr, cost, profile)
        claims_view = claims_mod.display(claims)
        sr_sub = sr[sr.profile == profile].drop(columns=["profile"]) if not sr.empty else sr
        sections.append({
            "profile": profile, "generated": bool(sub.generated.any()),
            "table1": {"md": md_table(t1), "html": html_table(t1), "frame": t1},
            "all": {"md": md_table(all_results(agg, profile)),
                    "html": html_table(all_results(agg, profile))},
            "ladders": ladders,
            "sr": {"md": md_table(sr_sub), "html": html_table(sr_sub)} if not sr_sub.empty
            else None,
            "figures": figures,
            "sweeps": sweeps,
            "rank_figures": rank_figures,
            "swa": {"md": md_table(swa_t), "html": html_table(swa_t)} if not swa_t.empty
            else None,
            "rerank": {"md": md_table(rr_t), "html": html_table(rr_t)} if not rr_t.empty
            else None,
            "claims": {"md": md_table(claims_view), "html": html_table(claims_view),
                       "frame": claims, "reading_check": claims_mod.reading_check(claims)}
            if not claims.empty else None,
            "provenance": {"md": md_table(_provenance_table(sub)),
                           "html": html_table(_provenance_table(sub))},
        })
    cost_view = cost.drop(columns=["path"]) if not cost.empty else cost
    repro = reproductions_frame(store)
    lit = lit_mod.literature_table(agg=agg)
    return {
        "literature": {"md": md_table(lit), "html": html_table(lit),
                       "places": lit_mod.ftwa_place(), "notes": lit_mod.source_notes(),
                       "unbuilt": lit_mod.unbuilt_note(),
                       "disagree": lit_mod.disagreements()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": str(results), "source": paper.get("source", ""),
        "num_runs": len(store.runs), "num_profiles": len(store.profiles),
        "skipped": store.skipped, "sections": sections,
        "cost": {"md": md_table(cost_view), "html": html_table(cost_view)}
        if not cost.empty else None,
        "reproductions": {"md": md_table(repro), "html": html_table(repro)}
        if not repro.empty else None,
        "banner": GENERATED_BANNER, "footnote": FOOTNOTE, "aggregate": agg, "paper": paper,
    }


def _sweeps(frame: pd.DataFrame, profile: str) -> list[dict[str, Any]]:
    """Per dataset and kind (rate, height): the sweep table, sentences and figure."""
    out = []
    if frame.empty:
        return out
    for key, unit, kind in (("sweep", "r", "rate"), ("sweep_heights", "h", "height")):
        long = sweep_mod.sweep_long(frame, key)
        if long.empty:
            continue
        for dataset in sorted(set(long.dataset)):
            table = sweep_mod.sweep_table(long, dataset, unit)
            sub = long[long.dataset == dataset]
            ref = sweep_mod.control_reference(frame, dataset)
            genuine = bool(frame[frame.dataset == dataset]["genuine_lr"].any())
            title = (f"Rank-1 vs query {kind}, {dataset} ({profile})"
                     + (", queries genuinely LR: further down-sampled" if genuine else ""))
            png = plots.rank1_vs_query_rate(sub, title, ref, kind)
            out.append({"dataset": dataset, "kind": kind, "md": md_table(table),
                        "html": html_table(table),
                        "sentences": _sweep_sentences(long, dataset) if kind == "rate"
                        else [], "generated": bool(sub.generated.any()),
                        "figure": Figure(title, f"{key}__{profile}__{dataset}.png", png)})
    return out


def _sweep_sentences(long: pd.DataFrame, dataset: str) -> list[str]:
    """The per-method sentences, then the one across methods (when there are two or more)."""
    across = sweep_mod.overview(long, dataset)
    return sweep_mod.sentences(long, dataset) + ([across] if across else [])


#: ranked lists in the report: per table row, its lowest seed's run
RANKS_K, RANKS_WORST, RANKS_RANDOM = 8, 3, 2
#: their resolution: about 1,150 px wide with labels of about 14 px, so that shown at the HTML
#: page's width (1,400 px at most) or on GitHub the labels read as body text does
RANKS_DPI = 140


def _ranked_lists(frame: pd.DataFrame, profile: str, problems: list[str] | None = None
                  ) -> list[Figure]:
    """One ranked-list figure per (dataset, table row): the run with the lowest seed that has
    ranked lists. A run whose data is not here, or whose ranked lists are damaged or another
    run's, is left out with a warning (added to ``problems``, which the report lists)."""
    figures = []
    if frame.empty or "ranks" not in frame:
        return figures
    have = frame[frame["ranks"].notna()].sort_values(["dataset", "label", "seed", "trial"])
    for (dataset, label), g in have.groupby(["dataset", "label"], sort=True):
        first = g.iloc[0]
        try:
            record = load_record(first["path"])
            png = draw(record, load_ranks(first["path"], record["run_id"]), RANKS_K,
                       RANKS_WORST, RANKS_RANDOM,
                       dpi=RANKS_DPI, palette=True)
        except UserError as exc:
            log.warning("no ranked-list figure for %s on %s: %s", label, dataset, exc)
            if problems is not None:
                problems.append(f"no ranked-list figure for {label} on {dataset}: {exc}")
            continue
        figures.append(Figure(f"{label} on {dataset} (seed {first['seed']})",
                              f"ranks__{profile}__{dataset}__{slug(label)}.png", png))
    return figures


def _md_finalize(value: Any) -> Any:
    """Every value the Markdown template prints, escaped unless it is a table ``md_table``
    escaped cell by cell: text from records never reaches the page as HTML."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return md_escape(value)
    return value


def _env(markdown: bool = False) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2.html")),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        finalize=_md_finalize if markdown else None)


def render(results: str | Path, out: str | Path, formats: tuple[str, ...] = ("md", "html"),
           skip_bad: bool = False) -> dict[str, Any]:
    """Write report.md (+ figure PNGs) and/or report.html under ``out``; return the context."""
    out = Path(out)
    check_report_folder(out)
    ctx = build(results, skip_bad)
    env, md_env = _env(), _env(markdown=True)
    files: dict[str, bytes] = {}
    if "md" in formats:
        for s in ctx["sections"]:
            for f in [*s["figures"], *[w["figure"] for w in s["sweeps"]],
                      *s["rank_figures"]]:
                files[f.file] = f.png
        files["report.md"] = md_env.get_template("report.md.j2").render(**ctx).encode()
    if "html" in formats:
        files["report.html"] = env.get_template("report.html").render(**ctx).encode()
    swap_in(out, files)
    ctx["written"] = [out / name for name in ("report.md", "report.html") if name in files]
    return ctx


def _is_report_file(path: Path) -> bool:
    return path.is_file() and (path.name in REPORT_FILES or path.suffix == ".png")


def check_report_folder(out: Path) -> None:
    """``out`` is replaced whole by a new report: it must be a folder holding a report only."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a folder for report.md / report.html")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if not _is_report_file(p)]
        if foreign:
            raise UserError(f"--out {out} holds files that are not part of a report (e.g. "
                            f"{sorted(foreign)[0]}); the report replaces the folder whole, so "
                            "choose an empty folder or one holding a report only")
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {out}: cannot write in {parent}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def swap_in(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temp folder beside ``out``, then swap it in for ``out`` whole: a
    failure part-way leaves the previous report as it was. The folder then holds exactly this
    report (a ``--format md`` render drops an earlier report.html). Temp folders a killed
    report left beside ``out`` are removed first."""
    name = glob.escape(out.name)  # a folder name may hold glob characters ([, *, ?)
    for stale in [*out.parent.glob(f".{name}.*.tmp"), *out.parent.glob(f".{name}.old-*")]:
        owner = re.search(r"\.old-(\d+)$|\.(\d+)-[^.]*\.tmp$", stale.name)
        pid = next((g for g in owner.groups() if g), "") if owner else ""
        if pid and _alive(int(pid)):
            continue  # another report into the same folder is being swapped in right now
        shutil.rmtree(stale, ignore_errors=True)  # left by a report that was killed
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{os.getpid()}-",
                                suffix=".tmp"))
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    try:
        for name, data in files.items():
            write_bytes(tmp / name, data, within=tmp)
        os.chmod(tmp, 0o777 & ~current_umask())
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.rename(old, out)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)


def regression_check(results: str | Path, tol: float, skip_bad: bool = False,
                     counts: dict[str, int] | None = None) -> list[str]:
    """The reproduced numbers on real data that differ from the paper by more than ``tol``;
    ``counts`` receives how many were compared (see ``reports.paper.check``)."""
    ctx = build(results, skip_bad)
    return check(ctx["aggregate"], ctx["paper"], tol, counts)
