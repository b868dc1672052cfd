"""Where a suite's cells run: ``--launcher inline`` (one after another in this process, the
default), ``local`` (in parallel processes on this machine: one per GPU with its
``CUDA_VISIBLE_DEVICES``, or N CPU processes) or ``slurm`` (a Slurm job array through
submitit, one cell per job). Every launcher runs a cell through the same function,
:func:`run_cell`, which writes the cell's record into the results folder; a cell whose record is
already there is not started again, and one that raised leaves ``.checkpoints/<run id>.failed``
(what went wrong), which ``suite --status`` reports.

Preempted or timed-out Slurm jobs are requeued by submitit's checkpointing hook and resume from
the run's own checkpoint (``.checkpoints/<run id>.pt``), as any interrupted run does.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.core.atomic import write_text
from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from benchmark.harness.experiment import run_experiment
from benchmark.harness.identity import identify
from benchmark.harness.paths import RunPaths, is_locked
from benchmark.harness.suite import expand
from datasets import trial_configs

log = logging.getLogger(__name__)

LAUNCHERS = ("inline", "local", "slurm")
SUBMITIT_EXTRA = ("submitit is not installed: pip install 'mlr-bench[cluster]' (or pip install "
                  "submitit) to use --launcher slurm")


@dataclass
class Cell:
    """One run of a suite: everything a process needs to run it and nothing it shares."""

    method: str
    dataset: str
    seed: int
    trial: int
    cfg: dict[str, Any]
    label: str
    run_id: str
    data_root: str | None
    out_dir: str
    device: str = "auto"
    keep_model: bool = False
    tensorboard: bool = False

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.out_dir), self.run_id)

    @property
    def record(self) -> Path:
        return self.paths.record

    @property
    def failed_marker(self) -> Path:
        return self.paths.failed

    @property
    def lock(self) -> Path:
        return self.paths.lock


def cells_of(spec: dict[str, Any], out_dir: str | Path, data_root: str | None,
             device: str = "auto", keep_model: bool = False, tensorboard: bool = False
             ) -> list[Cell]:
    """The suite's cells in order, each with its run id (no image decoded)."""
    out = []
    for r in expand(spec):
        base = load_config(spec.get("profile", "cpu"), list(spec.get("set") or []) + r["set"])
        for trial, cfg in trial_configs(r["dataset"], base, r["trials"]):
            ident = identify(r["method"], r["dataset"], cfg, r["seed"], data_root)
            label = f"{r['method']} [{', '.join(r['set'])}]" if r["set"] else r["method"]
            out.append(Cell(r["method"], r["dataset"], r["seed"], trial, cfg, label,
                            ident.run_id, data_root, str(out_dir), device, keep_model,
                            tensorboard))
    return out


def state(cell: Cell) -> str:
    """done (its record exists), running (a live process holds its lock), failed (its last
    attempt raised), or missing."""
    if cell.record.is_file():
        return "done"
    if is_locked(cell.lock):
        return "running"
    if cell.failed_marker.is_file():
        return "failed"
    return "missing"


def run_cell(cell: Cell | dict[str, Any], progress: bool = False) -> dict[str, Any]:
    """Run one cell (in whatever process a launcher gives it) and say how it went; a failure
    is written to the cell's ``.failed`` marker, then raised."""
    cell = Cell(**cell) if isinstance(cell, dict) else cell
    t0, started = time.perf_counter(), time.time()
    lines = logging.getLogger("mlr_bench.progress")
    try:
        rec = run_experiment(cell.method, cell.dataset, cell.cfg, seed=cell.seed,
                             data_root=cell.data_root, out_dir=cell.out_dir,
                             device_name=cell.device, progress=progress,
                             keep_model=cell.keep_model, tensorboard=cell.tensorboard)
    except BaseException as exc:
        lines.error("FAILED: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300]
                       if str(exc) else "")
        try:
            write_text(cell.failed_marker, json.dumps({
                "run_id": cell.run_id, "error": f"{type(exc).__name__}: {exc}",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": os.uname().nodename,
                "slurm_job": os.environ.get("SLURM_JOB_ID")}, indent=1) + "\n")
        except OSError:
            pass
        raise
    cell.failed_marker.unlink(missing_ok=True)
    m = rec["metrics"]
    lines.info("%s: rank1 %.2f  rank5 %.2f  mAP %.2f%s; record %s", rec["run_id"], m["rank1"],
               m["rank5"], m["mAP"], " (already stored)" if rec.get("skipped") else "",
               rec.get("path"))
    return {"run_id": rec["run_id"], "rank1": rec["metrics"]["rank1"],
            "mAP": rec["metrics"]["mAP"], "stored": bool(rec.get("skipped")),
            "seconds": time.perf_counter() - t0, "path": rec.get("path"),
            "started": started, "ended": time.time(), "pid": os.getpid()}


def cell_line(n: int, total: int, cell: Cell, res: dict[str, Any]) -> str:
    """The line a launcher prints when a cell ends."""
    took = "stored" if res["stored"] else f"{res['seconds']:.0f} s"
    return (f"[{n}/{total}] {cell.label} on {cell.dataset} seed {cell.seed} trial {cell.trial}: "
            f"rank1 {res['rank1']:.1f} mAP {res['mAP']:.1f} ({took})")


def failed_line(n: int, total: int, cell: Cell, exc: BaseException) -> str:
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return (f"[{n}/{total}] {cell.label} on {cell.dataset} seed {cell.seed} trial {cell.trial}: "
            f"FAILED ({type(exc).__name__}: {first}; .checkpoints/{cell.run_id}.failed keeps it)")


def failures_error(failed: list[Cell], total: int) -> UserError:
    return UserError(f"{len(failed)} of {total} cells failed (e.g. {failed[0].run_id}; its "
                     ".checkpoints/<run id>.failed says why); `suite --status` lists them, and "
                     "running the suite again retries them")


# -- inline: one cell after another in this process ----------------------------------------------
def launch_inline(cells: list[Cell], progress: bool = True, report=print
                  ) -> list[dict[str, Any]]:
    """Run the cells one after another here, through ``run_cell`` as every launcher does: a
    cell that fails is recorded (its ``.failed`` marker) and the others still run; then one
    error says how many failed. An interrupt stops the suite (run it again to resume)."""
    results: list[dict[str, Any]] = []
    failed: list[Cell] = []
    for n, cell in enumerate(cells, 1):
        try:
            res = run_cell(cell, progress=progress)
        except Exception as exc:  # noqa: BLE001 - recorded, the other cells go on
            failed.append(cell)
            report(failed_line(n, len(cells), cell, exc))
            continue
        results.append(res)
        report(cell_line(n, len(cells), cell, res))
    if failed:
        raise failures_error(failed, len(cells))
    return results


# -- local: parallel processes on this machine ---------------------------------------------------
def _local_slots(workers: int | None, device: str) -> list[str | None]:
    """One entry per worker: the GPU it sees (CUDA_VISIBLE_DEVICES) or None (CPU)."""
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    if gpus:
        n = min(workers or gpus, gpus)
        return [str(i) for i in range(n)]
    return [None] * max(1, workers or 2)


def _local_worker(cell: dict[str, Any], slot: str | None, threads: int,
                  log_file: str) -> dict[str, Any]:
    if slot is not None:  # a spawned worker: torch has not touched CUDA yet
        os.environ["CUDA_VISIBLE_DEVICES"] = slot
    torch.set_num_threads(max(1, threads))
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    progress = logging.getLogger("mlr_bench.progress")
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False  # its lines reach the file once, not again through the root
    root = logging.getLogger()
    root.addHandler(handler)  # warnings of the rest of the suite
    root.setLevel(logging.WARNING)
    return run_cell(cell)


def launch_local(cells: list[Cell], workers: int | None = None, device: str = "auto",
                 report=print) -> list[dict[str, Any]]:
    """Run the cells in parallel processes on this machine: one per GPU (each sees one,
    through CUDA_VISIBLE_DEVICES) or ``workers`` CPU processes (the cores shared out). Each
    cell's progress goes to ``<out>/logs/<run id>.log``."""
    slots = _local_slots(workers, device)
    threads = max(1, (os.cpu_count() or 1) // len(slots))
    results: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")  # a clean interpreter per worker: CUDA and threads unset
    # one pool per slot, so a GPU is never given to two cells at once
    pools = [ProcessPoolExecutor(1, mp_context=ctx) for _ in slots]
    futures = {}
    try:
        for k, cell in enumerate(cells):
            logs = Path(cell.out_dir) / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            slot = k % len(slots)
            fut = pools[slot].submit(_local_worker, asdict(cell), slots[slot], threads,
                                     str(logs / f"{cell.run_id}.log"))
            futures[fut] = cell
        failed = []
        for n, fut in enumerate(as_completed(futures), 1):
            cell = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported, the other cells go on
                failed.append(cell)
                log_file = Path(cell.out_dir) / "logs" / f"{cell.run_id}.log"
                report(failed_line(n, len(cells), cell, exc) + f" (log {log_file})")
                continue
            results.append(res)
            report(cell_line(n, len(cells), cell, res))
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=False)
    if failed:
        raise failures_error(failed, len(cells))
    return results


# -- slurm: a job array through submitit ---------------------------------------------------------
def submitit_module():
    try:
        import submitit
    except ImportError:
        raise UserError(SUBMITIT_EXTRA) from None
    return submitit


def launch_slurm(cells: list[Cell], folder: str | Path, partition: str | None = None,
                 gpus_per_job: int = 1, timeout_min: int = 24 * 60,
                 array_parallelism: int = 32, cpus_per_task: int = 8, cluster: str = "slurm",
                 wait: bool = False, report=print) -> list[Any]:
    """Submit the cells as one Slurm job array (submitit), one cell per job, and return the
    jobs (waiting for them when ``wait``). ``cluster``: "slurm", or submitit's "local" /
    "debug" executor standing in for Slurm (tests, a dry run)."""
    submitit = submitit_module()
    from benchmark.harness.slurm_job import CellJob

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": int(timeout_min), "name": "mlr-bench",
                              "tasks_per_node": 1, "nodes": 1}
    if cluster == "slurm":
        params |= {"slurm_array_parallelism": int(array_parallelism),
                   "gpus_per_node": int(gpus_per_job), "cpus_per_task": int(cpus_per_task)}
        if partition:
            params["slurm_partition"] = partition
    elif cluster == "local":
        params |= {"gpus_per_node": 0 if gpus_per_job == 0 else int(gpus_per_job)}
    executor.update_parameters(**params)
    jobs = executor.map_array(CellJob(), [asdict(c) for c in cells])
    ids = [j.job_id for j in jobs]
    report(f"submitted {len(jobs)} cells as {cluster} jobs {ids[0]}..{ids[-1]} (logs under "
           f"{folder}); `python -m benchmark suite FILE --status --out "
           f"{cells[0].out_dir}` shows their state")
    if wait:
        for job, cell in zip(jobs, cells):
            res = job.result()
            report(f"{cell.label} on {cell.dataset} seed {cell.seed}: rank1 "
                   f"{res['rank1']:.1f} mAP {res['mAP']:.1f}")
    return jobs


def status_table(cells: list[Cell]) -> tuple[list[tuple[Cell, str]], dict[str, int]]:
    rows = [(c, state(c)) for c in cells]
    counts = {s: sum(1 for _, t in rows if t == s) for s in ("done", "running", "failed",
                                                            "missing")}
    return rows, counts


def failure_of(cell: Cell) -> str:
    try:
        return json.loads(cell.failed_marker.read_text()).get("error", "")
    except (OSError, json.JSONDecodeError):
        return ""
