"""One prepared command for a lent GPU: every CUDA path once, the paper-profile cost of every
method, the data path's share of training speed, and the paper grid's projected GPU-hours.

    PYTHONPATH=. python3 scripts/gpu_check.py --out "$OUT/gpu"            # on the GPU machine
    python scripts/gpu_check.py --dry-run --out /tmp/gpu-dry               # anywhere, in seconds

Everything it writes is small JSON under ``--out``: ``gpu_check.json`` (the summary, rewritten
after every section, so a run stopped by its time budget or killed keeps what it measured), the
run records of its trainings under ``runs/``, and the ``profile`` records under
``profile/fp32/`` and ``profile/bf16/``. Sections, in order (docs/gpu.md says what each
measures and how to read it):

1. ``environment``: the device, its memory, the CUDA stack (the records' environment block).
2. ``paths``: each CUDA path once: a short training run (fp32, then bf16 autocast) with its
   evaluation, a checkpoint save and resume against the uninterrupted run, channels_last and
   ``torch.compile`` (profile steps), and a 1-process DDP step (NCCL on CUDA, gloo on CPU)
   whose loss and gradients equal the plain step's.
3. ``data_path``: training images/s through the real path (bank -> P x K sampler ->
   augmentation -> step, the harness's loop) over the step alone on tensors already on the
   device (the profile's), Baseline and FTWA in bf16, on a full-size generated CUHK03 stand-in
   (in a temporary folder, removed after), with the GPU's utilisation where torch can read it;
   below 0.9 the data path is the bottleneck, and then ``train.data_path`` pinned and device
   are measured too (a dry run measures all three) and the fastest named.
4. ``profiles``: ``profile`` at the ``paper`` profile for the Baseline, FTWA and every method of
   the field, fp32 and bf16: parameters, GMACs, query / gallery images/s at batch 256,
   training images/s at batch 64, peak memory.
5. ``projection``: per method and dataset of ``benchmark/suites/paper.yaml``, the runs x
   epochs x steps at the profiled speed (``suite --estimate``), in GPU-hours, fp32 and bf16,
   and the Baseline's and FTWA's also at the measured real-path speed.

``--dry-run`` runs the same sections on the CPU at the ``smoke`` profile with tiny sizes, so that
every step, file and record shape is proven before a GPU is at hand (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the working tree's packages
    sys.path.insert(0, str(ROOT))

SCHEMA = "mlr-bench/gpu-check/v1"
#: the methods profiled: the Baseline, FTWA and every method of the field that has landed
METHODS = ["baseline", "ftwa", "sing", "csr-gan", "ffsr-rife", "rife", "ffsr", "rain", "cad-net"]


class Settings:
    """The sizes of a real (GPU) run and of a dry run."""

    def __init__(self, dry: bool):
        self.dry = dry
        self.profile = "smoke" if dry else "paper"
        self.device = "cpu" if dry else "cuda"
        self.path_steps = 2 if dry else 20          # training steps of the path runs
        self.infer_batch = 8 if dry else 256
        self.train_batch = 8 if dry else 64
        self.repeats = 1 if dry else 5
        self.warmup = 0 if dry else 2
        self.data_steps = 2 if dry else 60          # steps of the real-path trainings
        self.stand_in_ids = 12 if dry else None     # None: the full-size stand-in
        # inductor needs minutes on a CPU; a dry run proves the wrapping with the eager backend
        self.compile_backend = "eager" if dry else "inductor"


class Budget:
    def __init__(self, minutes: float):
        self.start = time.monotonic()
        self.seconds = minutes * 60.0

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "traceback": traceback.format_exc().splitlines()[-6:]}


# -- sections -------------------------------------------------------------------------------------
def environment_section(ctx: Context) -> dict[str, Any]:
    import torch

    from benchmark.harness import environment

    device = environment.resolve_device(ctx.s.device)
    out = {"device": str(device), "environment": environment.block(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                      "capability": f"{props.major}.{props.minor}",
                      "multiprocessors": props.multi_processor_count}
    return out


def _config(ctx: Context, extra: list[str]) -> dict[str, Any]:
    from benchmark.harness.config import load_config

    return load_config(ctx.s.profile, ["model.weights=none", *extra])


def _short_run(ctx: Context, method: str, dataset: str, extra: list[str], folder: str,
               data_root: str | None = None) -> dict[str, Any]:
    from benchmark.harness.experiment import run_experiment

    cfg = _config(ctx, extra)
    rec = run_experiment(method, dataset, cfg, data_root=data_root, out_dir=ctx.out / folder,
                         device_name=ctx.s.device, progress=False)
    steps = int(rec["training"]["reid_optimizer_steps"])
    train_s = float(rec["timings"]["train_s"])
    return {"run_id": rec["run_id"], "record": str(Path(folder) / f"{rec['run_id']}.json"),
            "rank1": rec["metrics"]["rank1"], "mAP": rec["metrics"]["mAP"],
            "steps": steps, "batch_size": int(cfg["train"]["batch_size"]),
            "train_s": round(train_s, 3),
            "images_per_s": round(steps * int(cfg["train"]["batch_size"]) / train_s, 2)
            if train_s > 0 else None,
            "loss_history": [h["loss"] for h in rec["training"]["history"]]}


def _resume(ctx: Context) -> dict[str, Any]:
    """Two re-id epochs killed right after the first epoch's checkpoint and resumed, against the
    uninterrupted run: the loss history and the weights."""
    import torch

    from benchmark.core.seeding import set_seed
    from benchmark.harness import environment, training
    from datasets.bank import prepare_data
    from methods import build_method

    cfg = _config(ctx, ["train.epochs=2", "train.iters_per_epoch=2"])
    device = environment.resolve_device(ctx.s.device)
    prep = prepare_data("synthetic", cfg, None, progress=False)
    classes = int(prep.labels.max()) + 1

    def build():
        set_seed(0)
        return build_method("baseline", cfg, classes).to(device)

    whole = build()
    expected = training.train(whole, prep, cfg, device, 0, None, progress=False)

    class Killed(Exception):
        pass

    real = training.TrainLoop.save_checkpoint

    def save_then_die(loop):
        real(loop)
        if loop.stages[loop.stage_index] is loop.reid and loop.step_in_stage == loop.reid.iters:
            raise Killed

    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    checkpoint = tmp / "baseline.pt"
    training.TrainLoop.save_checkpoint = save_then_die
    try:
        try:
            training.train(build(), prep, cfg, device, 0, checkpoint, progress=False)
        except Killed:
            pass
    finally:
        training.TrainLoop.save_checkpoint = real
    size_mib = round(checkpoint.stat().st_size / 2**20, 2)
    resumed = build()
    try:
        got = training.train(resumed, prep, cfg, device, 0, checkpoint, progress=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a, b = whole.state_dict(), resumed.state_dict()
    diffs = [float((a[k].float() - b[k].float()).abs().max()) for k in a
             if isinstance(a[k], torch.Tensor) and a[k].numel()]
    return {"resumed_from_epoch": got["resumed_from_epoch"],
            "history_equal": got["history"] == expected["history"],
            "weights_max_abs_difference": max(diffs) if diffs else 0.0,
            "checkpoint_mib": size_mib}


def _ddp(ctx: Context) -> dict[str, Any]:
    """One process in a process group (NCCL on CUDA, gloo on CPU): DistributedDataParallel's step
    against the plain step on the same batch and weights."""
    import torch
    import torch.distributed as dist

    from benchmark.core.seeding import set_seed
    from benchmark.harness import environment
    from benchmark.harness.cost import random_images, training_batch
    from benchmark.harness.training import _Step
    from methods import build_method

    cfg = _config(ctx, [])
    device = environment.resolve_device(ctx.s.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    size = tuple(int(v) for v in cfg["model"]["input_size"])
    k = int(cfg["train"]["num_instances"])
    set_seed(0)
    images = random_images(4 * k, size, device, False)

    def step(wrap: bool) -> tuple[float, dict[str, torch.Tensor]]:
        set_seed(0)
        method = build_method("baseline", cfg, 4).to(device).train()
        batch = training_batch(method, 4 * k, k, images)
        module = (torch.nn.parallel.DistributedDataParallel(_Step(method),
                                                            find_unused_parameters=True)
                  if wrap else _Step(method))
        out = module(batch)
        out["loss"].backward()
        return float(out["loss"].detach()), {n: p.grad.detach().clone()
                                             for n, p in method.named_parameters()
                                             if p.grad is not None}

    plain_loss, plain_grads = step(False)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-ddp-"))
    dist.init_process_group(backend, init_method=f"file://{tmp / 'store'}", rank=0, world_size=1)
    try:
        ddp_loss, ddp_grads = step(True)
    finally:
        dist.destroy_process_group()
        shutil.rmtree(tmp, ignore_errors=True)
    diff = max(float((plain_grads[n] - ddp_grads[n]).abs().max()) for n in plain_grads)
    return {"backend": backend, "plain_loss": plain_loss, "ddp_loss": ddp_loss,
            "loss_equal": plain_loss == ddp_loss, "grads_max_abs_difference": diff,
            "same_gradients": sorted(plain_grads) == sorted(ddp_grads)}


def _profile(ctx: Context, method: str, amp: bool, channels_last: bool = False,
             compiled: bool = False, repeats: int | None = None) -> dict[str, Any]:
    from benchmark.harness.cost import profile_method, record_name
    from benchmark.harness.store import write_json_atomic

    rec = profile_method(method, _config(ctx, []), ctx.s.device, batch_size=ctx.s.infer_batch,
                         amp=amp, channels_last=channels_last, compiled=compiled,
                         repeats=repeats or ctx.s.repeats, warmup=ctx.s.warmup,
                         train_batch_size=ctx.s.train_batch,
                         compile_backend=ctx.s.compile_backend)
    folder = ctx.out / "profile" / ("bf16" if amp else "fp32")
    if channels_last or compiled:
        folder = ctx.out / "profile" / "paths"
    path = write_json_atomic(folder / record_name(rec), rec, within=ctx.out)
    t = rec["throughput"]
    return {"record": str(path.relative_to(ctx.out)), "batch_size": rec["batch_size"],
            "train_batch_size": rec["train_batch_size"],
            "params_all_m": round(rec["parameters"]["all"] / 1e6, 2),
            "gmacs_query": round(rec["macs"]["query_gmacs"], 3),
            "gmacs_gallery": round(rec["macs"]["gallery_gmacs"], 3),
            "query_images_per_s": t["query"]["images_per_s"],
            "gallery_images_per_s": t["gallery"]["images_per_s"],
            "train_images_per_s": t["train"]["images_per_s"],
            "peak_memory_train": t["train"]["peak_memory"]}


def paths_section(ctx: Context) -> dict[str, Any]:
    steps = ["train.epochs=1", f"train.iters_per_epoch={ctx.s.path_steps}"]
    out: dict[str, Any] = {}
    checks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("train_fp32", lambda: _short_run(ctx, "baseline", "synthetic", steps, "runs/fp32")),
        ("train_bf16", lambda: _short_run(ctx, "baseline", "synthetic",
                                          steps + ["train.amp=true"], "runs/bf16")),
        ("checkpoint_resume", lambda: _resume(ctx)),
        ("channels_last", lambda: _profile(ctx, "baseline", True, channels_last=True,
                                           repeats=2)),
        ("compile", lambda: _profile(ctx, "baseline", True, compiled=True, repeats=2)),
        ("ddp_one_process", lambda: _ddp(ctx)),
    ]
    for name, fn in checks:
        if ctx.budget.left() < 30:
            out[name] = {"skipped": "time budget"}
            continue
        t0 = time.monotonic()
        try:
            out[name] = fn() | {"seconds": round(time.monotonic() - t0, 1)}
        except Exception as exc:  # one path failing must not cost the others
            out[name] = _error(exc)
        ctx.save()
    return out


def profiles_section(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = dict(ctx.profiled)  # those data_path measured already
    for amp in (False, True):
        for method in ctx.methods:
            key = f"{method}/{'bf16' if amp else 'fp32'}"
            if key in out and "error" not in out[key]:
                continue
            if ctx.budget.left() < 60:
                out[key] = {"skipped": "time budget"}
                continue
            t0 = time.monotonic()
            try:
                out[key] = _profile(ctx, method, amp) | {
                    "seconds": round(time.monotonic() - t0, 1)}
            except Exception as exc:
                out[key] = _error(exc)
            ctx.sections["profiles"] = out
            ctx.save()
    return out


def _stand_in(ctx: Context, root: Path) -> str:
    """The generated CUHK03 stand-in, in a temporary folder (images, not results: it is not
    written under --out, whose files come back from the device machine)."""
    from datasets.synth import write_like

    if ctx.s.stand_in_ids is None:
        write_like("cuhk03", root, full_size=True, seed=0)
    else:
        write_like("cuhk03", root, ids=ctx.s.stand_in_ids, seed=0)
    return str(root)


def data_path_section(ctx: Context) -> dict[str, Any]:
    """Real path (the harness's loop on the stand-in) over the step alone (the profile's bf16
    training images/s at the same batch)."""
    import torch

    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-data-"))
    try:
        return _data_path(ctx, _stand_in(ctx, tmp), t0, torch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _data_path(ctx: Context, root: str, t0: float, torch: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"stand_in_seconds": round(time.monotonic() - t0, 1),
                           "stand_in": "full size" if ctx.s.stand_in_ids is None else
                           f"{ctx.s.stand_in_ids} identities"}
    for method in ("baseline", "ftwa"):
        entry: dict[str, Any] = {}
        out[method] = entry
        try:
            if f"{method}/bf16" not in ctx.profiled:  # the step alone, kept for `profiles`
                ctx.profiled[f"{method}/bf16"] = _profile(ctx, method, True)
            step_alone = ctx.profiled[f"{method}/bf16"].get("train_images_per_s")
            entry["step_alone_images_per_s"] = step_alone
        except Exception as exc:
            entry["step_alone"] = _error(exc)
            step_alone = None
        # train.data_path: augmented on the CPU and copied (the default), through pinned
        # memory, or the bank on the device and augmented there: the same batches each way
        for mode in ("cpu", "pinned", "device"):
            if ctx.budget.left() < 90:
                entry[mode] = {"skipped": "time budget"}
                continue
            keeps_up = (entry.get("cpu") or {}).get("ratio")
            if mode != "cpu" and not ctx.s.dry and keeps_up and keeps_up >= 0.9:
                entry[mode] = {"skipped": "the default path keeps up (ratio >= 0.9)"}
                continue
            if mode != "cpu" and ctx.s.dry and method != "baseline":
                entry[mode] = {"skipped": "dry run: the Baseline proves this path"}
                continue
            extra = ["train.epochs=1", f"train.iters_per_epoch={ctx.s.data_steps}",
                     "train.amp=true", f"train.batch_size={ctx.s.train_batch}",
                     f"train.data_path={mode}"]
            try:
                real = _short_run(ctx, method, "mlr-cuhk03", extra,
                                  f"runs/data-path/{mode}", root)
                if torch.cuda.is_available():
                    try:
                        real["gpu_utilization_percent_after"] = torch.cuda.utilization()
                    except Exception as exc:  # needs pynvml
                        real["gpu_utilization_percent_after"] = f"unavailable: {exc}"[:120]
                ratio = (real["images_per_s"] / step_alone
                         if step_alone and real.get("images_per_s") else None)
                entry[mode] = {"real_path": real, "ratio": round(ratio, 3) if ratio else None,
                               "verdict": None if ratio is None else
                               "the data path keeps up" if ratio >= 0.9 else
                               "the data path is the bottleneck (ratio below 0.9)"}
            except Exception as exc:
                entry[mode] = _error(exc)
            ctx.sections["data_path"] = out
            ctx.save()
        ratios = {m: entry[m].get("ratio") for m in ("cpu", "pinned", "device")
                  if isinstance(entry.get(m), dict) and entry[m].get("ratio")}
        entry["ratio"] = ratios.get("cpu")
        if ratios:
            best = max(ratios, key=ratios.get)
            entry["fastest"] = {"data_path": best, "ratio": ratios[best]}
    return out


def projection_section(ctx: Context) -> dict[str, Any]:
    from benchmark.harness.suite import estimate, load_suite

    spec = load_suite(ROOT / "benchmark" / "suites" / "paper.yaml")
    if ctx.s.dry:  # the dry run's profiles are at smoke: project the same grid at smoke
        spec = dict(spec, profile="smoke")
    out: dict[str, Any] = {"suite": "benchmark/suites/paper.yaml", "profile": spec["profile"]}
    for precision in ("fp32", "bf16"):
        folder = ctx.out / "profile" / precision
        if not folder.is_dir():
            out[precision] = {"skipped": "no profile records"}
            continue
        rows = estimate(spec, folder)
        hours = [r["hours"] for r in rows if isinstance(r.get("hours"), (int, float))]
        out[precision] = {"gpu_hours": round(sum(hours), 1) if hours else None,
                          "cells_costed": len(hours), "cells": len(rows),
                          "rows": rows}
    # the Baseline's and FTWA's at the real path's speed (bf16)
    real = {}
    for method in ("baseline", "ftwa"):
        entry = (ctx.sections.get("data_path") or {}).get(method) or {}
        ratio = (entry.get("fastest") or {}).get("ratio")
        bf16 = [r for r in (out.get("bf16") or {}).get("rows", []) if r["method"] == method]
        hours = [r["hours"] for r in bf16 if isinstance(r.get("hours"), (int, float))]
        if ratio and hours:
            real[method] = {"gpu_hours_step_alone": round(sum(hours), 2),
                            "data_path": entry["fastest"]["data_path"],
                            "gpu_hours_real_path": round(sum(hours) / ratio, 2)}
    out["real_path"] = real
    return out


SECTIONS: list[tuple[str, Callable[[Context], dict[str, Any]], float]] = [
    ("environment", environment_section, 5),
    ("paths", paths_section, 60),
    ("data_path", data_path_section, 90),
    ("profiles", profiles_section, 60),
    ("projection", projection_section, 5),
]


class Context:
    def __init__(self, out: Path, settings: Settings, budget: Budget, methods: list[str]):
        self.out, self.s, self.budget, self.methods = out, settings, budget, methods
        self.sections: dict[str, Any] = {}
        self.profiled: dict[str, Any] = {}  # "method/precision" -> its profile's summary
        self.summary = {"schema": SCHEMA, "created": _now(), "dry_run": settings.dry,
                        "profile": settings.profile, "budget_s": budget.seconds,
                        "methods": methods, "sections": self.sections, "finished": None}

    def save(self) -> None:
        from benchmark.harness.store import write_json_atomic

        self.summary["elapsed_s"] = round(time.monotonic() - self.budget.start, 1)
        write_json_atomic(self.out / "gpu_check.json", self.summary, within=self.out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gpu_check.py", description=__doc__.split("\n\n")[0],
        epilog="docs/gpu.md: the exact call on a lent machine and how to read the summary.")
    p.add_argument("--out", required=True, help="folder for gpu_check.json and the records")
    p.add_argument("--dry-run", action="store_true",
                   help="the same sections on the CPU at the smoke profile, tiny sizes")
    p.add_argument("--budget-min", type=float, default=8.0,
                   help="stop starting new measurements after this many minutes (default 8)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"methods to profile, comma-separated (default: {','.join(METHODS)})")
    p.add_argument("--sections", default=",".join(n for n, _, _ in SECTIONS),
                   help="sections to run, comma-separated (default: all)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        print(f"gpu_check: --out {out} is a file; expected a folder", file=sys.stderr)
        return 2
    settings = Settings(args.dry_run)
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here; use --dry-run to check the command on a CPU",
                  file=sys.stderr)
            return 2
    from methods import METHODS as REGISTERED

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in REGISTERED]
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in wanted if s not in {n for n, _, _ in SECTIONS}]
    if unknown or bad:
        print(f"gpu_check: unknown {'method' if unknown else 'section'}(s): "
              f"{', '.join(unknown or bad)}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(out, settings, Budget(args.budget_min), methods)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for name, fn, needs in SECTIONS:
        if name not in wanted:
            continue
        if ctx.budget.left() < needs:
            ctx.sections[name] = {"skipped": "time budget"}
            ctx.save()
            continue
        t0 = time.monotonic()
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        try:
            result = fn(ctx)
        except Exception as exc:
            result = _error(exc)
        ctx.sections[name] = result | {"seconds": round(time.monotonic() - t0, 1)}
        ctx.save()
    ctx.summary["finished"] = _now()
    ctx.save()
    print(json.dumps({k: v for k, v in ctx.summary.items() if k != "sections"}, indent=1))
    print(f"summary: {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
