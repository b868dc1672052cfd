"""Provenance for results records: versions, device, git commit, and what decides the numbers
on this machine (the CPU's instruction sets and the kernels torch dispatches to, threads, the
CUDA stack and its determinism settings, and a numerics fingerprint)."""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from benchmark.core import numerics
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


#: the CPU flags that decide which kernels run (a subset of /proc/cpuinfo's)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """The instruction-set flags of ``ISA_FLAGS`` this CPU has (empty where /proc/cpuinfo is
    not there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


@lru_cache(maxsize=1)
def onednn_isa() -> str | None:
    """The instruction set oneDNN dispatches to, as its verbose mode names it (one small
    convolution with verbose on, its C-level output captured); None where it says nothing."""
    if not torch.backends.mkldnn.is_available():
        return None
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 1)
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    torch.nn.functional.conv2d(torch.zeros(2, 16, 16, 16),
                                               torch.zeros(16, 16, 3, 3), padding=1)
            finally:
                os.dup2(saved, 1)
            tmp.seek(0)
            out = tmp.read().decode(errors="replace")
    except (OSError, RuntimeError):
        return None
    finally:
        os.close(saved)
    for line in out.splitlines():
        if ",info,cpu,isa:" in line:
            return line.split(",info,cpu,isa:", 1)[1].strip()
    return None


def cpu_block() -> dict[str, Any]:
    """What decides the CPU kernels: the CPU and its instruction sets, torch's CPU capability
    (ATen's vectorised kernels), oneDNN's instruction set, MKL, the threads, and the variables
    that pin them (``benchmark.core.numerics``)."""
    return {"model": cpu_name(), "cores": os.cpu_count(), "isa": cpu_flags(),
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_isa": onednn_isa(), "mkl": torch.backends.mkl.is_available(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "env": numerics.kernel_env()}


def cuda_block(device: torch.device) -> dict[str, Any] | None:
    """The CUDA stack and the settings that decide its kernels (None on a CPU run)."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    try:
        driver = torch.cuda.driver_version() if hasattr(torch.cuda, "driver_version") else None
    except Exception:  # noqa: BLE001 - a driver query that fails says nothing
        driver = None
    return {"device": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "runtime": torch.version.cuda,
            "driver": driver,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
            else None,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def numerics_fingerprint(device: torch.device) -> str:
    """A hash of a fixed tiny network's forward and backward pass on fixed inputs, on
    ``device``: convolutions (oneDNN or cuDNN), batch norm, GELU, a matmul (MKL or cuBLAS),
    softmax, log-sum-exp and pairwise distances (ATen's vectorised kernels), reductions split
    over the threads. Equal fingerprints: the same kernels with the same numbers; a change of
    CPU capability, oneDNN or MKL instruction set, thread count or GPU changes it. It draws
    from its own generator, leaving torch's global one as it was."""
    gen = torch.Generator().manual_seed(20211)

    def draw(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).to(device)

    fn = torch.nn.functional
    x = draw(16, 3, 32, 16)
    labels = (torch.arange(16) % 10).to(device)
    params = [draw(24, 3, 3, 3, scale=0.3), draw(24, scale=0.1), draw(48, 24, 3, 3, scale=0.1),
              draw(10, 48, scale=0.2), draw(10, scale=0.1)]
    for p in params:
        p.requires_grad_(True)
    w1, b1, w2, w3, b3 = params
    with torch.enable_grad():
        h = torch.relu(fn.batch_norm(fn.conv2d(x, w1, b1, padding=1), None, None,
                                     training=True))
        h = fn.gelu(fn.conv2d(h, w2, stride=2, padding=1)).mean((2, 3))
        logits = fn.linear(h, w3, b3)
        loss = (fn.cross_entropy(logits, labels) + 1e-2 * torch.cdist(h, h).mean()
                + torch.sigmoid(logits).logsumexp(1).mean()
                + 1e-3 * torch.softmax(logits, 1).pow(2).sum())
        loss.backward()
    digest = hashlib.sha256()
    for t in (logits, loss, *(p.grad for p in params)):
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def numerics_block(device: torch.device) -> dict[str, Any]:
    """The numerics mode (``native`` or ``portable``), the fingerprint, and its device."""
    return {"mode": numerics.current_mode(), "fingerprint": numerics_fingerprint(device),
            "fingerprint_device": str(device)}


def block(device: torch.device) -> dict[str, Any]:
    """The ``environment`` block of every record (runs and profiles): device, versions, commit,
    and what decides the numbers (``cpu``, ``cuda``, ``numerics``)."""
    return {"device": str(device), "device_name": device_name(device), "versions": versions(),
            "git_commit": git_commit(), "cpu": cpu_block(), "cuda": cuda_block(device),
            "numerics": numerics_block(device)}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu, cuda or auto; got '{name}'")
    return torch.device(name)
