"""Provenance for results records: versions, device, git commit."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from benchmark.core.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    """HEAD of the checkout, with '+dirty' when tracked files changed; 'unknown' without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def versions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "platform": platform.platform(),
        "executable": sys.executable,
    }


def cpu_snapshot() -> dict[str, float] | None:
    """The machine's busy CPU time and this process's own (all its threads, and its waited-for
    children), in seconds, with a wall clock: two of these give how many cores *other*
    processes kept busy in between (``others_busy``). None where /proc/stat is not there."""

    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        use = resource.getrusage(who)
        own += use.ru_utime + use.ru_stime
    return {"wall": time.monotonic(), "busy": busy / os.sysconf("SC_CLK_TCK"), "own": own}


def others_busy(start: dict[str, float] | None, end: dict[str, float] | None) -> float | None:
    """Cores that processes other than this one kept busy on average between two snapshots:
    about 0 on an idle machine, about 1 while one other single-threaded job runs. Unlike the
    load average it leaves out this process's own threads (and does not lag a minute behind)."""
    if not start or not end or end["wall"] - start["wall"] <= 0:
        return None
    other = (end["busy"] - start["busy"]) - (end["own"] - start["own"])
    return round(max(0.0, other / (end["wall"] - start["wall"])), 3)


def others_since(start: dict[str, float] | None) -> float | None:
    """``others_busy`` from ``start`` (a ``cpu_snapshot``) to now."""
    return others_busy(start, cpu_snapshot())


def machine_load(device: torch.device) -> dict[str, Any]:
    """How busy the machine is now: 1/5/15-minute load averages, CPU count, and the GPU's
    utilisation (%) where torch can read it."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        one = five = fifteen = None
    out: dict[str, Any] = {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen,
                           "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        try:
            out["gpu_utilization_pct"] = torch.cuda.utilization(device)
        except Exception:  # noqa: BLE001 - pynvml missing or no permission: say nothing
            out["gpu_utilization_pct"] = None
    return out


def block(device: torch.device) -> dict[str, Any]:
    """The ``environment`` block of every record (runs and profiles): device, versions, commit."""
    return {"device": str(device), "device_name": device_name(device), "versions": versions(),
            "git_commit": git_commit()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu, cuda or auto; got '{name}'")
    return torch.device(name)
